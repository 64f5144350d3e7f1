using PowaCluster.Host.Cli;
using PowaCluster.Host.Startup;
using PowaCluster.Lab.Embedded;

namespace PowaCluster.Lab;

/// <summary>powa-lab's command line: demo and bench, on throwaway PostgreSQL instances.</summary>
public sealed record LabOptions(
    string Command,
    int? Seconds = null,
    int Servers = 6,
    int Frequency = 5,
    int Remotes = 2,
    int? PoolSize = null,
    bool Debug = false,
    bool Reference = false,
    int Nodes = 1,
    bool Failover = false,
    int Warmup = 15,
    int FrozenSeconds = 45,
    IReadOnlyList<int>? Loads = null,
    int IdleSeconds = 10,
    bool IdleGiven = false,
    bool Quick = false,
    bool FrozenGiven = false,
    int Powa = 4,
    string PowaWanted = "4",
    bool SideBySide = false,
    IReadOnlyList<string>? Only = null,
    int LongFreezeSeconds = 0,
    bool Kill = false,
    bool Prometheus = false,
    int Statements = 300,
    string? From = null,
    bool Outage = false,
    bool Pin = false)
{
    public const string Usage = """
        usage:
          powa-lab demo [--seconds N] [--servers N] [--frequency S] [--remotes N] [--pool-size N] [--debug]
                        [--powa 4|5|5.N] [--reference | --side-by-side] [--nodes N [--failover | --prometheus]]
              Starts a throwaway repository and remote PostgreSQL instances on loopback, registers
              servers, runs powa-cluster and shows what it collected (until Ctrl-C, or for N seconds).
              --powa 5 runs the throwaway instances with the newest archivist 5 built by scripts/install-deps.sh
              from ../shared/vendor (5.3.0), --powa 5.1 with the newest 5.1 (5.1.2), instead of Debian's
              4.1.4, and adds rows per snapshot per datasource.
              --reference runs the reference powa-collector instead, measured the same way: Debian's
              1.2.0 on PoWA 4, 1.3.1 from ../shared/vendor on PoWA 5.
              --side-by-side runs powa-cluster and the reference at the same time on the same remote
              servers, each into a repository database of its own (powa, powa_reference), and compares
              the rows they stored per snapshot, datasource by datasource.
              --nodes N runs N collector processes as one cluster (static seeds on loopback);
              --failover then kills one with SIGKILL and stops another with SIGTERM, and measures
              from the repository how their servers were taken over; --prometheus has a throwaway
              Prometheus (Debian's package) scrape every node's /metrics every 5 s and, at the end,
              reports promtool's verdict, the main series per node and every dashboard expression.
          powa-lab bench [--servers N] [--frequency S] [--seconds N] [--warmup N] [--frozen N] [--idle N]
                         [--loads N,N,...] [--pool-size N] [--remotes N] [--quick] [--pin]
              Defaults: 20 servers at 5 s, a 30 s window after 15 s of warm-up, 45 s frozen, 10 s idle.
              --quick: powa-cluster alone at --servers, then the --loads, the idle rows if --idle is given
              and the frozen-remote run if --frozen is given; nothing else (for experiments).
              --pin: the repository's instance alone on the first core, the remotes, the collectors and the
              bench on the others (taskset), for every row; the saturated collector then runs with pool
              sizes 1, 2 and 4, and at 50 % and 80 % of the repository's limit.
              powa-cluster and the reference collectors one after the other on the same servers, one
              table: snapshots, interval error, CPU per snapshot, memory, threads, connections; the
              repository's own limit and our throughput at saturation; a frozen-remote run.
          powa-lab faults [--servers N] [--frequency S] [--only FAULT,FAULT,...] [--long-freeze SECONDS] [--debug]
              A cluster of 3 powa-cluster processes (mutual TLS) on throwaway instances, put through faults one
              after the other, and a table: collector alive, snapshots due and stored, longest and shortest
              gap, sessions idle in transaction, time to resume. Faults: repository-stop (60 s),
              repository-freeze (60 s), remote-freeze (90 s), notify-flood (100,000), hostile-rows, strangers,
              isolated-seed, node-freeze; --long-freeze 600 adds the repository frozen 10 minutes. Defaults:
              10 servers at 5 s; about 12 minutes without --long-freeze. Exit code 1 when a row fails.
          powa-lab outage [--servers N] [--frequency S] [--seconds N] [--warmup N] [--statements N] [--pool-size N] [--remotes N] [--debug]
              The repository stopped for --seconds (default 300) while powa-cluster (with its spool) and the
              reference collector run side by side on the same remotes, each into a repository database of its
              own on the one repository instance; then started again, and 4 more servers activated (no
              backlog). A table: snapshots due during the outage, spooled, replayed, stored, lost; time to
              drain the backlog; the longest delay of a live snapshot of a server without a backlog during the
              drain; peak resident memory. --statements: distinct statements added to each remote's
              pg_stat_statements (the size of a snapshot; 300, as bench). Defaults: 20 servers at 5 s, 60 s of warm-up.
          powa-lab scale [--nodes N] [--servers N] [--frequency S] [--seconds N] [--kill] [--powa 4|5|5.N] [--pool-size N] [--debug]
              N powa-cluster run processes started together (static seeds, mutual TLS) against throwaway
              remotes on loopback (60 servers per instance: PostgreSQL listens on 64 addresses at most), for
              --seconds; prints per node the servers held, remote connections, resident memory and CPU, and for
              the fleet the servers not snapshotted within their first two intervals, the interval error p50/p99
              after them, connect timeouts and nodes downed. --kill then sends SIGKILL to the oldest node and
              measures how long its servers take to resume. Defaults: 3 nodes, 1,000 servers at 60 s, 300 s.
          powa-lab rollout [--nodes N] [--servers N] [--frequency S] [--from GIT-REF] [--outage] [--pool-size N] [--debug]
              N nodes (mutual TLS) of the build of --from (built from this clone into a scratch directory; this
              build without it) replaced one at a time by this build, highest ordinal first, each once the one
              before is ready plus one interval, as a StatefulSet's rolling update. --outage: the repository is
              down from before the first node stops until after the last is restarted. Prints per server the
              intervals lost (gap > 1.5 F) and doubles (gap < 0.5 F) in the roll, the longest gap, where the
              singletons ran, the log lines of messages a node could not read; exit code 1 when a goal is
              missed. Defaults: 3 nodes, 300 servers at 30 s. Run from the clone's top directory.
        """;

    public static LabOptions Parse(IReadOnlyList<string> args)
    {
        if (args.Count == 0) throw new UsageException("no command given");
        var o = args[0] switch
        {
            "demo" or "bench" => new LabOptions(args[0]),
            "faults" => new LabOptions(args[0]) { Servers = 10 },
            "outage" => new LabOptions(args[0]) { Servers = 20, Seconds = 300, Warmup = 60 },
            "scale" => new LabOptions(args[0]) { Servers = 1000, Frequency = 60, Seconds = 300, Nodes = 3 },
            "rollout" => new LabOptions(args[0]) { Servers = 300, Frequency = 30, Nodes = 3 },
            "stack-node" when args.Count == 1 => new LabOptions(args[0]), // the bench's stack floor (Bench/StackNode.cs)
            "--help" or "-h" or "help" => new LabOptions("help"),
            var c => throw new UsageException($"unknown command \"{c}\""),
        };
        if (o.Command == "bench") o = o with { Servers = 20, Seconds = 30 }; // about 5 minutes in all
        for (var i = 1; i < args.Count; i++)
        {
            var a = args[i];
            string Value() => i + 1 < args.Count ? args[++i] : throw new UsageException($"{a} needs a value");
            int Int(int min, int max)
            {
                var v = Value();
                if (!int.TryParse(v, out var n) || n < min || n > max)
                    throw new UsageException($"{a} must be a whole number from {min} to {max}, not \"{v}\"");
                return n;
            }
            o = a switch
            {
                "--seconds" => o with { Seconds = Int(1, 86400) },
                "--servers" => o with { Servers = Int(1, 5000) },
                "--frequency" => o with { Frequency = Int(5, 3600) },
                "--remotes" => o with { Remotes = Int(1, 8) },
                "--pool-size" => o with { PoolSize = Int(1, 256) },
                "--debug" => o with { Debug = true },
                "--reference" when o.Command == "demo" => o with { Reference = true },
                "--side-by-side" when o.Command == "demo" => o with { SideBySide = true },
                "--powa" when o.Command is "demo" or "scale" => ParsePowa(o, Value()),
                "--nodes" when o.Command is "demo" or "scale" => o with { Nodes = Int(1, 9) },
                "--nodes" when o.Command == "rollout" => o with { Nodes = Int(3, 9) },
                "--from" when o.Command == "rollout" => o with { From = Value() },
                "--outage" when o.Command == "rollout" => o with { Outage = true },
                "--kill" when o.Command == "scale" => o with { Kill = true },
                "--failover" when o.Command == "demo" => o with { Failover = true },
                "--prometheus" when o.Command == "demo" => o with { Prometheus = true },
                "--warmup" when o.Command is "bench" or "outage" => o with { Warmup = Int(0, 600) },
                "--frozen" when o.Command == "bench" => o with { FrozenSeconds = Int(0, 3600), FrozenGiven = true },
                "--idle" when o.Command == "bench" => o with { IdleSeconds = Int(0, 600), IdleGiven = true },
                "--loads" when o.Command == "bench" => o with { Loads = ParseList(Value()) },
                "--quick" when o.Command == "bench" => o with { Quick = true },
                "--pin" when o.Command == "bench" => o with { Pin = true },
                "--statements" when o.Command == "outage" => o with { Statements = Int(0, 5000) },
                "--only" when o.Command == "faults" => o with { Only = ParseFaults(Value()) },
                "--long-freeze" when o.Command == "faults" => o with { LongFreezeSeconds = Int(1, 3600) },
                _ => throw new UsageException($"unknown option \"{a}\" for {o.Command}"),
            };
        }
        if (o.Kill && o.Nodes < 3)
            throw new UsageException("--kill needs --nodes 3 or more: the cluster must keep a majority");
        if (o.Failover && o.Nodes < 3)
            throw new UsageException("--failover needs --nodes 3 or more: it stops two nodes and the cluster must keep a majority");
        if (o.Prometheus && (o.Nodes < 2 || o.Failover))
            throw new UsageException("--prometheus goes with --nodes 2 or more (the nodes serve /metrics), not with --failover");
        if (o.SideBySide && (o.Reference || o.Nodes > 1))
            throw new UsageException("--side-by-side runs powa-cluster and the reference together: leave --reference and --nodes out");
        return o;
    }

    /// <summary>"4" (Debian's archivist), "5" (the newest 5.x built) or a release's prefix such as "5.1".</summary>
    static LabOptions ParsePowa(LabOptions o, string v)
    {
        var parts = v.Split('.');
        if (parts.Length > 3 || !parts.All(p => p.Length > 0 && p.All(char.IsAsciiDigit)) || parts[0] is not ("4" or "5") || (parts[0] == "4" && parts.Length > 1))
            throw new UsageException($"--powa takes 4, 5 or a PoWA 5 release such as 5.1 or 5.3.0, not \"{v}\"");
        return o with { Powa = int.Parse(parts[0]), PowaWanted = v };
    }

    /// <summary>
    /// The archivist release the throwaway instances run: null for Debian's (4.1.4); else the newest built that
    /// --powa names, or a startup error saying what is built.
    /// </summary>
    public string? ArchivistRelease()
    {
        if (Powa == 4) return null;
        if (LocalPostgres.PowaRelease(PowaWanted) is { } release) return release;
        var built = LocalPostgres.PowaReleases;
        throw new StartupException($"--powa {PowaWanted} needs archivist {PowaWanted}: scripts/install-deps.sh builds each " +
                                   $"../shared/vendor/powa-archivist-*.tar.gz into {LocalPostgres.PowaTrees}; built there: " +
                                   (built.Count == 0 ? "none" : string.Join(", ", built)));
    }

    static IReadOnlyList<string> ParseFaults(string v)
    {
        var list = v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
        foreach (var f in list)
            if (!Faults.FaultsCommand.All.Contains(f))
                throw new UsageException($"unknown fault \"{f}\": {string.Join(", ", Faults.FaultsCommand.All)}");
        return list.Count > 0 ? list : throw new UsageException("--only needs at least one fault");
    }

    static IReadOnlyList<int> ParseList(string v)
    {
        var parts = v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var list = new List<int>();
        foreach (var p in parts)
            list.Add(int.TryParse(p, out var n) && n is > 0 and <= 5000 ? n : throw new UsageException($"--loads takes server counts such as 20,100, not \"{v}\""));
        return list;
    }

    /// <summary>The collector's own command line for these options (the repository DSN given).</summary>
    public CommandLine ToRun(string repositoryDsn) => new("run", repositoryDsn, null, Debug, PoolSize, null, null, []);
}
