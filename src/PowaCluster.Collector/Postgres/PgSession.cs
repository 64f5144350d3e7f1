using Npgsql;

namespace PowaCluster.Collector.Postgres;

/// <summary>The powa extension's version as installed in a database.</summary>
public sealed record PowaVersion(int Major, int Minor, string Text)
{
    public bool SameMajorMinor(PowaVersion other) => Major == other.Major && Minor == other.Minor;

    /// <summary>Why a remote with this powa cannot feed a repository with <paramref name="repository"/>'s (their tables differ), or null.</summary>
    public string? MismatchWith(PowaVersion repository) => SameMajorMinor(repository) ? null
        : $"the remote server has powa {this} but the repository has powa {repository}: they must have the same major.minor version";
    public override string ToString() => Text;

    public static PowaVersion? Parse(string? text)
    {
        if (string.IsNullOrEmpty(text)) return null;
        var parts = text.Split('.');
        if (!int.TryParse(parts[0], out var major)) return null;
        var minor = parts.Length > 1 && int.TryParse(parts[1], out var m) ? m : 0;
        return new PowaVersion(major, minor, text);
    }
}

/// <summary>Opening connections the way every collector connection must be opened.</summary>
public static class PgSession
{
    /// <summary>
    /// A copy of a connection string for one collector role: its application_name, the connect and command
    /// timeouts, and no pooling (each actor owns its connection).
    /// </summary>
    public static NpgsqlConnectionStringBuilder ForRole(NpgsqlConnectionStringBuilder source, string applicationName,
        TimeSpan connectTimeout, TimeSpan commandTimeout) =>
        new(source.ConnectionString)
        {
            ApplicationName = applicationName,
            Timeout = Math.Max(1, (int)connectTimeout.TotalSeconds),
            CommandTimeout = Math.Max(1, (int)commandTimeout.TotalSeconds),
            Pooling = false,
        };

    /// <summary>
    /// Opens a connection, then sets lock_timeout to 2 s when the server's is 0 (the reference's rule):
    /// a collector must never wait forever on a lock.
    /// </summary>
    public static async Task<NpgsqlConnection> OpenAsync(NpgsqlConnectionStringBuilder csb, CancellationToken ct,
        IReadOnlyDictionary<string, string>? sessionSettings = null)
    {
        var source = SourceOf(csb);
        var conn = source.CreateConnection();
        // The data source lives as long as its connection: Npgsql says Closed once, when the connection is
        // closed, disposed or broken.
        conn.StateChange += (_, e) =>
        {
            if (e.CurrentState == System.Data.ConnectionState.Closed) source.Dispose();
        };
        try
        {
            await conn.OpenAsync(ct).ConfigureAwait(false);
            var cmd = new NpgsqlCommand(
                "SELECT pg_catalog.set_config(name, '2000', false) FROM pg_catalog.pg_settings " +
                "WHERE name = 'lock_timeout' AND setting = '0'", conn);
            await using var cmdScope = cmd.ConfigureAwait(false);
            if (sessionSettings is { Count: > 0 })
            {
                // One round trip: the settings travel as parameters, never as SQL text; text ones, not arrays
                // (the first array a connection's data source sees makes it build every array type's mapping:
                // ~160 kB per server, docs/architecture.md "Memory").
                foreach (var (k, v) in sessionSettings)
                {
                    cmd.CommandText += $" UNION ALL SELECT pg_catalog.set_config(${cmd.Parameters.Count + 1}, ${cmd.Parameters.Count + 2}, false)";
                    cmd.Parameters.Add(new NpgsqlParameter { Value = k });
                    cmd.Parameters.Add(new NpgsqlParameter { Value = v });
                }
            }
            await cmd.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
            return conn;
        }
        catch
        {
            await conn.DisposeAsync().ConfigureAwait(false);
            await source.DisposeAsync().ConfigureAwait(false); // never opened: no Closed to say
            throw;
        }
    }

    /// <summary>
    /// A data source of its own for one connection, dropped with it: Npgsql's slim builder (the plain types, arrays,
    /// TLS and Kerberos; none of the JSON, range, network or geometric mappings a collector never reads) and no
    /// type loading (every column read is a built-in type). Why not <c>new NpgsqlConnection(string)</c>: Npgsql
    /// keeps a data source per distinct connection string for the life of the process, pooled or not, each with
    /// all its type mappings and the server's whole pg_type: memory per server and per PoWA 5 database that grew
    /// with the fleet and was never given back when a server left or its password changed (docs/architecture.md,
    /// "Memory").
    /// </summary>
    static NpgsqlDataSource SourceOf(NpgsqlConnectionStringBuilder csb)
    {
        var b = new NpgsqlSlimDataSourceBuilder(csb.ConnectionString);
        b.ConfigureTypeLoading(t => t.EnableTypeLoading(false));
        b.EnableArrays();
        b.EnableTransportSecurity();
        b.EnableIntegratedSecurity();
        return b.Build();
    }

    /// <summary>
    /// Session settings that bound what a dead peer costs a server: a transaction left idle ends after
    /// <paramref name="idleInTransaction"/>, and the server probes the connection with TCP keepalives (every
    /// 30 s, given up after three unanswered probes) instead of waiting hours for the kernel's defaults.
    /// </summary>
    public static IReadOnlyDictionary<string, string> DeadPeerSettings(TimeSpan idleInTransaction) => new Dictionary<string, string>
    {
        ["idle_in_transaction_session_timeout"] = ((long)idleInTransaction.TotalMilliseconds).ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["tcp_keepalives_idle"] = "30",
        ["tcp_keepalives_interval"] = "10",
        ["tcp_keepalives_count"] = "3",
    };

    /// <summary>powa's version and quoted schema in the connected database; null without powa (or an unreadable version).</summary>
    public static async Task<(PowaVersion Version, string Schema)?> FindPowaAsync(NpgsqlConnection conn, CancellationToken ct)
    {
        var cmd = new NpgsqlCommand(PowaSql.FindPowa, conn);
        await using var cmdScope = cmd.ConfigureAwait(false);
        var r = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
        await using var rScope = r.ConfigureAwait(false);
        if (!await r.ReadAsync(ct).ConfigureAwait(false)) return null;
        return PowaVersion.Parse(r.GetString(0)) is { } v ? (v, r.GetString(1)) : null;
    }

    public static async Task ExecAsync(NpgsqlConnection conn, string sql, CancellationToken ct)
    {
        var cmd = new NpgsqlCommand(sql, conn);
        await using var cmdScope = cmd.ConfigureAwait(false);
        await cmd.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
    }

    /// <summary>A timeout token for one step; every remote call gets one.</summary>
    public static CancellationTokenSource Timeout(TimeSpan t) => new(t);

    /// <summary>
    /// An error message fit for logs and powa_snapshot_metas.errors: the PostgreSQL message, no stack; one line,
    /// no control character (a remote's message is its own text: escape sequences, newlines), 1,000 characters
    /// at most.
    /// </summary>
    public static string Describe(Exception e) => Configuration.LogText.OneLine(DescribeRaw(e), 1000);

    static string DescribeRaw(Exception e) => e switch
    {
        PostgresException pe => $"{pe.SqlState}: {pe.MessageText}{(pe.Detail is { Length: > 0 } d ? " (" + d + ")" : "")}",
        OperationCanceledException => "timed out",
        NpgsqlException { InnerException: TimeoutException } => "timed out",
        NpgsqlException { InnerException: { } inner } ne when inner is not PostgresException =>
            $"{ne.Message.TrimEnd('.')}: {inner.Message}",
        _ => e.Message,
    };

    /// <summary>True when the connection can no longer be used and must be replaced.</summary>
    public static bool IsBroken(NpgsqlConnection? conn) =>
        conn is null || conn.FullState.HasFlag(System.Data.ConnectionState.Broken) ||
        conn.FullState == System.Data.ConnectionState.Closed;
}
