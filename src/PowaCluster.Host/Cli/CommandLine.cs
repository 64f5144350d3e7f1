namespace PowaCluster.Host.Cli;

/// <summary>A command line that cannot be understood; the message says what is wrong.</summary>
public sealed class UsageException(string message) : Exception(message);

public sealed record CommandLine(
    string Command,
    string? Repository,
    string? ConfigFile,
    bool Debug,
    int? PoolSize,
    string? ClusterHost,
    int? ClusterPort,
    IReadOnlyList<string> Seeds,
    int? ServerId = null,
    int Timeout = 5,
    int? HttpPort = null)
{
    public const string Usage = """
        usage:
          powa-cluster run  [--repository DSN] [--config FILE] [--debug] [--pool-size N]
                            [--cluster-host HOST] [--cluster-port PORT] [--seed HOST:PORT ...] [--http-port PORT]
              Collects every server registered in the repository (powa_servers), until SIGTERM / Ctrl-C.
              Without --seed the node is a cluster of its own; with seeds (the same list on every node)
              it joins them and shares the servers with the other nodes. --http-port serves /healthz
              and /ready.
              DSN: a libpq URI (postgresql://user:pass@host:5432/powa), libpq key=value pairs or an
              Npgsql connection string. Without --repository: appsettings.json / PowaCluster__RepositoryDsn,
              then powa-collector's JSON file (--config FILE, /etc/powa-collector.conf,
              ~/.config/powa-collector.conf, ~/.powa-collector.conf, ./powa-collector.conf).
          powa-cluster status [--server ID] [--timeout S] [--repository DSN] [--config FILE]
              The servers, their collector node, status, last snapshot and last error, from a running cluster.
          powa-cluster reload [--timeout S] [--repository DSN] [--config FILE]
              Re-read powa_servers now (as powa-web's RELOAD, or SIGHUP on a node).
          powa-cluster snapshot ID [--timeout S] [--repository DSN] [--config FILE]
              Take a snapshot of server ID now (unless one is running or started less than 10 s ago).
              These three talk to the cluster through the repository (LISTEN/NOTIFY, as powa-web does) and
              exit with 1 when no collector answers within --timeout seconds (default 5).
          powa-cluster --version
        """;

    public static CommandLine Parse(IReadOnlyList<string> args)
    {
        if (args.Count == 0) throw new UsageException("no command given");
        var command = args[0] switch
        {
            "run" or "status" or "reload" or "snapshot" => args[0],
            "--version" or "version" => "version",
            "--help" or "-h" or "help" => "help",
            var c => throw new UsageException($"unknown command \"{c}\""),
        };
        string? repository = null, config = null, clusterHost = null;
        int? pool = null, clusterPort = null;
        var debug = false;
        int? serverId = null;
        var timeout = 5;
        int? httpPort = null;
        var first = 1;
        if (command == "snapshot")
        {
            if (args.Count < 2 || !int.TryParse(args[1], out var id) || id <= 0)
                throw new UsageException("snapshot needs a server id (powa_servers.id)");
            serverId = id;
            first = 2;
        }
        var seeds = new List<string>();
        for (var i = first; i < args.Count; i++)
        {
            var a = args[i];
            string Value()
            {
                if (i + 1 >= args.Count) throw new UsageException($"{a} needs a value");
                return args[++i];
            }
            int Int(int min, int max)
            {
                var v = Value();
                if (!int.TryParse(v, out var n) || n < min || n > max)
                    throw new UsageException($"{a} must be a whole number from {min} to {max}, not \"{v}\"");
                return n;
            }
            switch (a)
            {
                case "--repository": repository = Value(); break;
                case "--config": config = Value(); break;
                case "--debug": debug = true; break;
                case "--pool-size": pool = Int(1, 256); break;
                case "--cluster-host": clusterHost = Value(); break;
                case "--cluster-port": clusterPort = Int(0, 65535); break;
                case "--http-port" when command == "run": httpPort = Int(1, 65535); break;
                case "--seed":
                    var s = Value();
                    if (!s.Contains(':')) throw new UsageException($"--seed takes HOST:PORT, not \"{s}\"");
                    seeds.Add(s);
                    break;
                case "--server" when command == "status": serverId = Int(1, int.MaxValue); break;
                case "--timeout" when command is "status" or "reload" or "snapshot": timeout = Int(1, 600); break;
                default: throw new UsageException($"unknown option \"{a}\" for {command}");
            }
        }
        return new CommandLine(command, repository, config, debug, pool, clusterHost, clusterPort, seeds, serverId, timeout, httpPort);
    }
}
