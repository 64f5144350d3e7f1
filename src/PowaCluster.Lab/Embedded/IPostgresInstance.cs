using Npgsql;

namespace PowaCluster.Lab.Embedded;

/// <summary>
/// A PostgreSQL 15 server with PoWA's extensions available, reachable on several loopback addresses
/// (127.0.0.1 .. 127.0.0.N) at one port: a throwaway local instance, or a container where Docker runs.
/// </summary>
public interface IPostgresInstance : IAsyncDisposable
{
    string Name { get; }
    int Port { get; }
    string Password { get; }
    int LoopbackAddresses { get; }

    /// <summary>The i-th loopback address (1-based): 127.0.0.i.</summary>
    string Host(int i = 1);

    /// <summary>As the superuser "postgres", with the password.</summary>
    NpgsqlConnectionStringBuilder ConnectionString(string database = "postgres", int hostIndex = 1);

    async Task ExecAsync(string database, string sql)
    {
        await using var conn = new NpgsqlConnection(ConnectionString(database).ConnectionString);
        await conn.OpenAsync();
        await using var cmd = new NpgsqlCommand(sql, conn);
        await cmd.ExecuteNonQueryAsync();
    }

    async Task<T?> ScalarAsync<T>(string database, string sql)
    {
        await using var conn = new NpgsqlConnection(ConnectionString(database).ConnectionString);
        await conn.OpenAsync();
        await using var cmd = new NpgsqlCommand(sql, conn);
        var v = await cmd.ExecuteScalarAsync();
        return v is null or DBNull ? default : (T)Convert.ChangeType(v, typeof(T));
    }
}

/// <summary>Starts an instance: name, loopback addresses it must answer on.</summary>
public delegate Task<IPostgresInstance> PostgresFactory(string name, int loopbackAddresses);
