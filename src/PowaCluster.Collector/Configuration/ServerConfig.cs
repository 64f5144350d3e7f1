using System.Text;
using Npgsql;

namespace PowaCluster.Collector.Configuration;

/// <summary>
/// One row of powa_servers: what a ServerCollector needs to collect a remote server.
/// Its ToString never shows the password (records print every member by default).
/// </summary>
public sealed record ServerConfig(
    int SrvId,
    string Hostname,
    int Port,
    string Username,
    string? Password,
    string DbName,
    int Frequency,
    string? Alias)
{
    /// <summary>host:port, the reference's name for a worker.</summary>
    public string Name => $"{Hostname}:{Port}";

    /// <summary>True when a change needs a new remote connection.</summary>
    public bool ConnectionDiffers(ServerConfig other) =>
        Hostname != other.Hostname || Port != other.Port || Username != other.Username ||
        Password != other.Password || DbName != other.DbName;

    /// <summary>The remote connection string. A NULL password lets Npgsql use the passfile, as libpq does.</summary>
    public NpgsqlConnectionStringBuilder ToConnectionString(CollectorSettings settings) =>
        ToConnectionString(settings.ConnectTimeout, null, settings.RemoteSecurity);

    /// <summary>
    /// Why this row cannot be collected, or null. powa_servers.hostname is a host name or an address: a socket
    /// path would connect to a server on the collector's own host (whichever node runs it), and a host list
    /// (a,b) to whichever answers; neither is what powa-web shows. So is a loopback name or address when the
    /// cluster's nodes are not all on loopback (<paramref name="nodesOnLoopback"/> false): it is each node's own host.
    /// </summary>
    public string? Problem(bool nodesOnLoopback = true)
    {
        if (string.IsNullOrWhiteSpace(Hostname)) return "powa_servers.hostname is empty";
        if (Hostname.StartsWith('/') || Hostname.StartsWith('@'))
            return $"powa_servers.hostname \"{Shown(Hostname)}\" is a socket path: a remote server is reached by host name or address";
        if (!nodesOnLoopback && IsLoopback(Hostname))
            return $"powa_servers.hostname \"{Shown(Hostname)}\" is a loopback address, each collector node's own host (the cluster's nodes are " +
                   "not on loopback): register the server by a name or address every node reaches";
        if (Hostname.IndexOfAny([',', ' ', '\t', '\n', '\r', '=', ';', '\'', '"', '\\']) >= 0 || Hostname.Any(char.IsControl))
            return $"powa_servers.hostname \"{Shown(Hostname)}\" is not one host name or address (a list, or characters no host name has)";
        if (Port is < 1 or > 65535) return $"powa_servers.port {Port} is not a TCP port";
        if (Frequency > MaxFrequency)
            return $"powa_servers.frequency {Frequency} s is more than a timer can wait ({MaxFrequency} s, about 49 days)";
        return null;
    }

    /// <summary>localhost, a name under .localhost, 127.0.0.0/8 or ::1: the host the name is looked up on.</summary>
    public static bool IsLoopback(string host) =>
        host.Equals("localhost", StringComparison.OrdinalIgnoreCase) || host.EndsWith(".localhost", StringComparison.OrdinalIgnoreCase)
        || (System.Net.IPAddress.TryParse(host.Trim('[', ']'), out var ip) && System.Net.IPAddress.IsLoopback(ip));

    /// <summary>The longest interval an Akka timer can wait (uint.MaxValue milliseconds, less a second).</summary>
    public const int MaxFrequency = 4_294_966;

    /// <summary>A value from powa_servers for a log line: one line, 100 characters at most.</summary>
    public static string Shown(string s) => LogText.OneLine(s, 100);

    /// <param name="database">another database of the remote than the server's own (PoWA 5's per-database datasources)</param>
    public NpgsqlConnectionStringBuilder ToConnectionString(TimeSpan connectTimeout, string? database = null, RemoteSecurity? security = null)
    {
        var b = Build(connectTimeout, database);
        (security ?? RemoteSecurity.Default).ApplyTo(b);
        return b;
    }

    NpgsqlConnectionStringBuilder Build(TimeSpan connectTimeout, string? database) => new()
    {
        Host = Hostname,
        Port = Port,
        Username = Username,
        Password = Password,
        Database = database ?? DbName,
        ApplicationName = $"PoWA collector - worker {Name}",
        Timeout = Math.Max(1, (int)connectTimeout.TotalSeconds),
        // Remote calls have deadlines of their own (RemoteDeadline): Npgsql's command timeout would cancel
        // through a new connection and wait, synchronously, for a hung server's answer.
        CommandTimeout = 0,
        Pooling = false,
        // Should a cancellation reach Npgsql anyway, do not wait for a hung server's answer to it.
        CancellationTimeout = -1,
        // A snapshot is hundreds of kB of COPY: read it in pieces larger than 8 kB (fewer system calls per
        // snapshot), but not so large that the buffer, which the connection keeps for its whole life, weighs
        // on each server's memory (docs/architecture.md, "Memory").
        ReadBufferSize = RemoteReadBuffer,
    };

    /// <summary>
    /// The session setting that carries the srvid on every remote connection (set with lock_timeout, in the
    /// same round trip; not in the start-up packet, which a pooler such as PgBouncer may refuse): the snapshot's
    /// COPY texts are then the same for every server, one pg_stat_statements entry each on a remote that
    /// several servers share (the lab's, a server registered twice).
    /// </summary>
    public const string SrvIdSetting = "powa_cluster.srvid";

    /// <summary>The remote connection's read buffer (Npgsql's default is 8 kB).</summary>
    public const int RemoteReadBuffer = 16 * 1024;

    bool PrintMembers(StringBuilder sb)
    {
        sb.Append($"SrvId = {SrvId}, Hostname = {Hostname}, Port = {Port}, Username = {Username}, ");
        sb.Append($"Password = {(Password is null ? "null" : "***")}, DbName = {DbName}, Frequency = {Frequency}, Alias = {Alias}");
        return true;
    }
}

/// <summary>A powa_servers row and its version (xmin as text: it changes with every UPDATE of the row).</summary>
public sealed record ServerRow(ServerConfig Config, string RowVersion);
