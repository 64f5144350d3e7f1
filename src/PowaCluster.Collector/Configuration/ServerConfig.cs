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
    public NpgsqlConnectionStringBuilder ToConnectionString(CollectorSettings settings) => ToConnectionString(settings.ConnectTimeout);

    /// <param name="database">another database of the remote than the server's own (PoWA 5's per-database datasources)</param>
    public NpgsqlConnectionStringBuilder ToConnectionString(TimeSpan connectTimeout, string? database = null) => new()
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
        // A snapshot is hundreds of kB of COPY: read it in large pieces, not 8 kB ones (fewer system calls
        // and wake-ups per snapshot).
        ReadBufferSize = RemoteReadBuffer,
    };

    /// <summary>The remote connection's read buffer (Npgsql's default is 8 kB).</summary>
    public const int RemoteReadBuffer = 64 * 1024;

    bool PrintMembers(StringBuilder sb)
    {
        sb.Append($"SrvId = {SrvId}, Hostname = {Hostname}, Port = {Port}, Username = {Username}, ");
        sb.Append($"Password = {(Password is null ? "null" : "***")}, DbName = {DbName}, Frequency = {Frequency}, Alias = {Alias}");
        return true;
    }
}

/// <summary>A powa_servers row and its version (xmin as text: it changes with every UPDATE of the row).</summary>
public sealed record ServerRow(ServerConfig Config, string RowVersion);
