using Npgsql;

namespace PowaCluster.Lab.Embedded;

/// <summary>
/// A PoWA remote-mode set-up on throwaway instances: one repository and some remote servers, each with the
/// powa extension and the stats extensions in database "powa", some statements run so that there is data.
/// </summary>
public sealed class PowaLab : IAsyncDisposable
{
    public const string Database = "powa";
    public static readonly string[] StatsExtensions = ["pg_stat_kcache", "pg_qualstats", "pg_wait_sampling"];

    public IPostgresInstance Repository { get; }
    public IReadOnlyList<IPostgresInstance> Remotes { get; }

    PowaLab(IPostgresInstance repository, IReadOnlyList<IPostgresInstance> remotes)
    {
        Repository = repository; Remotes = remotes;
    }

    /// <param name="factory">how instances are started; throwaway local instances by default</param>
    public static async Task<PowaLab> StartAsync(int remotes = 2, int loopbackAddresses = 16, PostgresFactory? factory = null)
    {
        factory ??= LocalPostgres.Factory;
        var started = new List<IPostgresInstance>();
        try
        {
            var tasks = new List<Task<IPostgresInstance>> { factory("repository", 1) };
            for (var i = 1; i <= remotes; i++) tasks.Add(factory($"remote{i}", loopbackAddresses));
            foreach (var t in tasks)
            {
                try { started.Add(await t); }
                catch (Exception) { /* collected below */ }
            }
            foreach (var t in tasks) await t; // rethrows the first failure, after every instance is tracked
            var repo = started[0];
            await InstallPowaAsync(repo, withStatsExtensions: true);
            foreach (var r in started.Skip(1))
            {
                await InstallPowaAsync(r, withStatsExtensions: true);
                await MakeWorkloadAsync(r);
            }
            return new PowaLab(repo, started.Skip(1).ToList());
        }
        catch
        {
            foreach (var pg in started) await pg.DisposeAsync();
            throw;
        }
    }

    /// <summary>CREATE DATABASE powa and the extensions PoWA needs in it.</summary>
    /// <param name="powaVersion">an older powa of the instance's tree (to ALTER EXTENSION powa UPDATE later); its newest by default</param>
    public static async Task InstallPowaAsync(IPostgresInstance pg, bool withStatsExtensions, string database = Database,
        string? powaVersion = null)
    {
        await pg.ExecAsync("postgres", $"CREATE DATABASE {database}");
        var version = powaVersion is null ? "" : $" VERSION '{powaVersion.Replace("'", "''")}'";
        await pg.ExecAsync(database, $"CREATE EXTENSION pg_stat_statements; CREATE EXTENSION btree_gist; CREATE EXTENSION powa{version};");
        if (withStatsExtensions)
            foreach (var e in StatsExtensions)
                await pg.ExecAsync(database, $"CREATE EXTENSION {e}");
    }

    /// <summary>A few distinct statements, so that every datasource returns rows.</summary>
    public static async Task MakeWorkloadAsync(IPostgresInstance pg)
    {
        await pg.ExecAsync(Database, "CREATE TABLE IF NOT EXISTS lab_t(id int primary key, v text)");
        await pg.ExecAsync(Database, "INSERT INTO lab_t SELECT g, md5(g::text) FROM generate_series(1, 1000) g ON CONFLICT DO NOTHING");
        for (var i = 0; i < 20; i++)
            await pg.ExecAsync(Database, $"SELECT count(*) FROM lab_t WHERE id > {i * 10} AND v LIKE '{i % 10}%'");
        await pg.ExecAsync(Database, "CREATE OR REPLACE FUNCTION lab_f(i int) RETURNS int LANGUAGE plpgsql AS 'BEGIN RETURN i + 1; END'");
        await pg.ExecAsync(Database, "ANALYZE lab_t");
        await WorkAsync(pg);
    }

    /// <summary>
    /// <paramref name="count"/> distinct entries in pg_stat_statements (IN lists of different lengths are
    /// different queries), for a snapshot of realistic size: about 300 make some 370 kB of COPY text.
    /// </summary>
    public static async Task MakeStatementsAsync(IPostgresInstance pg, int count)
    {
        await using var conn = new NpgsqlConnection(pg.ConnectionString(Database).ConnectionString);
        await conn.OpenAsync();
        var sql = new System.Text.StringBuilder();
        for (var k = 1; k <= count; k++)
            sql.Append("SELECT count(*) FROM lab_t WHERE id IN (").Append(string.Join(',', Enumerable.Range(1, k))).Append(");\n");
        await using var cmd = new NpgsqlCommand(sql.ToString(), conn);
        await cmd.ExecuteNonQueryAsync();
    }

    /// <summary>One round of activity on a remote: statements with quals, a table scan, a PL/pgSQL call.</summary>
    public const string WorkloadSql = "SELECT count(*) FROM lab_t WHERE id > 500 AND v LIKE 'a%'; SELECT lab_f(1); " +
                                      "UPDATE lab_t SET v = md5(v) WHERE id = (random() * 999)::int + 1";

    public static Task WorkAsync(IPostgresInstance pg) => pg.ExecAsync(Database, WorkloadSql);

    /// <summary>The same on a connection kept open (a workload loop should not pay a SCRAM login each round).</summary>
    public static async Task WorkAsync(NpgsqlConnection conn)
    {
        await using var cmd = new NpgsqlCommand(WorkloadSql, conn);
        await cmd.ExecuteNonQueryAsync();
    }

    /// <summary>powa_register_server on the repository; returns the new srvid.</summary>
    public async Task<int> RegisterAsync(string hostname, int port, string alias, int frequency,
        string? password, string[]? extensions = null, string username = LocalPostgres.SuperUser, string dbname = Database,
        string repositoryDatabase = Database)
    {
        await using var conn = new NpgsqlConnection(Repository.ConnectionString(repositoryDatabase).ConnectionString);
        await conn.OpenAsync();
        await using (var cmd = new NpgsqlCommand(
            "SELECT powa_register_server(hostname => $1, port => $2, alias => $3, username => $4, password => $5, " +
            "dbname => $6, frequency => $7, extensions => $8)", conn))
        {
            cmd.Parameters.Add(new() { Value = hostname });
            cmd.Parameters.Add(new() { Value = port });
            cmd.Parameters.Add(new() { Value = alias });
            cmd.Parameters.Add(new() { Value = username });
            cmd.Parameters.Add(new() { Value = (object?)password ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
            cmd.Parameters.Add(new() { Value = dbname });
            cmd.Parameters.Add(new() { Value = frequency });
            cmd.Parameters.Add(new() { Value = extensions ?? StatsExtensions, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Array | NpgsqlTypes.NpgsqlDbType.Text });
            await cmd.ExecuteNonQueryAsync();
        }
        await using var id = new NpgsqlCommand("SELECT id FROM powa_servers WHERE hostname = $1 AND port = $2", conn)
        { Parameters = { new() { Value = hostname }, new() { Value = port } } };
        return (int)(await id.ExecuteScalarAsync())!;
    }

    /// <summary>Registers n servers spread over the remotes and their loopback addresses: (127.0.0.k, port) pairs.</summary>
    /// <param name="first">index of the first one: servers 0 .. first-1 are registered already</param>
    public async Task<IReadOnlyList<int>> RegisterManyAsync(int n, int frequency, string aliasPrefix = "lab",
        string repositoryDatabase = Database, int first = 0)
    {
        var ids = new List<int>();
        for (var i = first; i < first + n; i++)
        {
            var remote = Remotes[i % Remotes.Count];
            var addr = i / Remotes.Count + 1;
            ids.Add(await RegisterAsync(remote.Host(addr), remote.Port, $"{aliasPrefix}-{i + 1}", frequency, remote.Password,
                repositoryDatabase: repositoryDatabase));
        }
        return ids;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var r in Remotes) await r.DisposeAsync();
        await Repository.DisposeAsync();
    }
}
