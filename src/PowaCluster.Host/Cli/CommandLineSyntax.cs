using System.CommandLine;

namespace PowaCluster.Host.Cli;

/// <summary>
/// powa-cluster's commands and options for System.CommandLine: each command's --help is made from here.
/// The values are checked here (a port, a count, a HOST:PORT), so that a wrong one is a usage error (exit 2).
/// </summary>
public sealed class CommandLineSyntax
{
    public RootCommand Root { get; } = new("powa-cluster: PoWA's remote-mode collector (powa-collector) as an Akka.NET cluster.");

    public Option<string?> Repository { get; } = new("--repository")
    {
        HelpName = "DSN",
        Description = "The PoWA repository: a libpq URI (postgresql://user@host:5432/powa), libpq key=value pairs or an Npgsql " +
                      "connection string. Default: appsettings.json / PowaCluster__RepositoryDsn, then powa-collector's JSON " +
                      "file (--config, /etc/powa-collector.conf, ~/.config/powa-collector.conf, ~/.powa-collector.conf, ./powa-collector.conf).",
    };
    public Option<string?> Config { get; } = new("--config") { HelpName = "FILE", Description = "powa-collector's JSON configuration file" };
    public Option<bool> Debug { get; } = new("--debug") { Description = "Debug logging" };
    public Option<int?> PoolSize { get; } = IntOption("--pool-size", "N", 1, 256, "Repository connections (snapshot writers) of this node");
    public Option<string?> ClusterHost { get; } = new("--cluster-host") { HelpName = "HOST", Description = "Address the node's cluster endpoint binds" };
    public Option<int?> ClusterPort { get; } = IntOption("--cluster-port", "PORT", 0, 65535, "Port of the node's cluster endpoint (0: any free one)");
    public Option<string[]> Seeds { get; } = new("--seed")
    {
        HelpName = "HOST:PORT",
        Description = "A seed node of the cluster (repeat it; the same list on every node). Without it the node is a cluster of its own.",
        Arity = ArgumentArity.ZeroOrMore,
    };
    public Option<int?> HttpPort { get; } = IntOption("--http-port", "PORT", 1, 65535, "Serve /healthz, /ready and /metrics (Prometheus) on this port");
    public Option<string?> LogFormat { get; } = new("--log-format")
    {
        HelpName = "plain|json",
        Description = "One line per event: plain text (the default) or a JSON object for a log shipper",
    };
    public Option<int?> StatusServer { get; } = IntOption("--server", "ID", 1, int.MaxValue, "Only this server (powa_servers.id)");
    public Option<int?> Timeout { get; } = IntOption("--timeout", "S", 1, 600, "Seconds to wait for an answer (default 5; check: 10 per connection)");
    public Argument<string?> SnapshotServer { get; } = new("ID") { Description = "The server's id (powa_servers.id)", Arity = ArgumentArity.ZeroOrOne };
    public Option<bool> Version { get; } = new("--version") { Description = "Print the version" };

    public CommandLineSyntax()
    {
        Seeds.Validators.Add(r =>
        {
            foreach (var t in r.Tokens)
                if (!t.Value.Contains(':')) r.AddError($"--seed takes HOST:PORT, not \"{t.Value}\"");
        });
        LogFormat.AcceptOnlyFromAmong("plain", "json");

        // Our --version (the collector's version), not System.CommandLine's (the assembly's).
        foreach (var o in Root.Options.OfType<VersionOption>().ToList()) Root.Options.Remove(o);
        Root.Options.Add(Version);
        Root.SetAction(_ => 0);

        Add(new Command("run", "Collect every server registered in the repository (powa_servers), until SIGTERM or Ctrl-C. " +
                               "With --seed the node joins the other nodes and shares the servers with them."),
            Repository, Config, Debug, PoolSize, ClusterHost, ClusterPort, Seeds, HttpPort, LogFormat);
        Add(new Command("check", "Check the configuration, the repository and every active server of powa_servers, as run would " +
                                 "use them, and print a verdict per line. Writes nothing. Exit code 0 when everything the collector needs is there, 1 otherwise."),
            Repository, Config, Timeout);
        Add(new Command("status", "The servers, their collector node, status, last snapshot and last error, from a running cluster."),
            Repository, Config, StatusServer, Timeout);
        Add(new Command("reload", "Re-read powa_servers now (as powa-web's RELOAD, or SIGHUP on a node)."), Repository, Config, Timeout);
        var snapshot = new Command("snapshot", "Take a snapshot of server ID now (unless one is running or started less than 10 s ago).");
        snapshot.Arguments.Add(SnapshotServer);
        Add(snapshot, Repository, Config, Timeout);
        Add(new Command("version", "Print the version"));
    }

    void Add(Command command, params Option[] options)
    {
        foreach (var o in options) command.Options.Add(o);
        command.SetAction(_ => 0);
        Root.Subcommands.Add(command);
    }

    /// <summary>A whole number within bounds; anything else is a usage error that says so.</summary>
    static Option<int?> IntOption(string name, string helpName, int min, int max, string description) => new(name)
    {
        HelpName = helpName,
        Description = description,
        CustomParser = r =>
        {
            var v = r.Tokens.Count == 1 ? r.Tokens[0].Value : "";
            if (int.TryParse(v, out var n) && n >= min && n <= max) return n;
            r.AddError($"{name} must be a whole number from {min} to {max}, not \"{v}\"");
            return null;
        },
    };
}
