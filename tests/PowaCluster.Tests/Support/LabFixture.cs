using Npgsql;
using PowaCluster.Lab.Embedded;
using Xunit;

namespace PowaCluster.Tests.Support;

/// <summary>
/// The main PostgreSQL fixture (PoWA 4, Debian's archivist): a repository instance and two remote instances (each
/// reachable on 50 loopback addresses), started once for the whole test run and always stopped and deleted at the
/// end: throwaway local instances, or containers where a Docker engine is reachable (ContainerPostgres).
/// Each test takes a fresh repository database on the repository instance, so tests do not see each
/// other's servers. The tests of each archivist release and of powa-web have a fixture of their own
/// (PowaReleasesFixture), so that they run beside these.
/// </summary>
public sealed class LabFixture : IAsyncLifetime
{
    public PowaLab Lab { get; private set; } = null!;


    /// <summary>A throwaway CA for the multi-node tests' cluster TLS (Settings(name) gives a node's files).</summary>
    public LabCertificates Certificates { get; } = LabCertificates.Create("powa-cluster test CA");

    /// <summary>A remote database with powa but without pg_qualstats.</summary>
    public const string NoQualstatsDb = "powa_noqual";

    public async Task InitializeAsync()
    {
        Lab = await PowaLab.StartAsync(remotes: 2, loopbackAddresses: 50,
            factory: ContainerPostgres.ShouldUse() ? ContainerPostgres.Factory : LocalPostgres.Factory);
        var r = Lab.Remotes[0];
        await r.ExecAsync("postgres", $"CREATE DATABASE {NoQualstatsDb}");
        await r.ExecAsync(NoQualstatsDb, "CREATE EXTENSION pg_stat_statements; CREATE EXTENSION btree_gist; CREATE EXTENSION powa; " +
                                         "CREATE EXTENSION pg_stat_kcache; CREATE EXTENSION pg_wait_sampling;");
    }

    public async Task DisposeAsync()
    {
        if (Lab is not null) await Lab.DisposeAsync();
        Certificates.Dispose();
    }

    /// <summary>A new, empty PoWA repository database.</summary>
    public Task<TestRepository> NewRepositoryAsync() => TestRepository.CreateAsync(Lab);
}

[CollectionDefinition(Name)]
public sealed class LabCollection : ICollectionFixture<LabFixture>
{
    public const string Name = "PostgreSQL lab";
}

/// <summary>One repository database, and the queries tests assert with.</summary>
public sealed class TestRepository(PowaLab lab, string database)
{
    static int _databases;

    /// <summary>
    /// A new, empty PoWA repository database on the lab's repository instance; <paramref name="powaVersion"/>
    /// installs an older powa of the instance's tree (CREATE EXTENSION powa VERSION), to update later.
    /// </summary>
    public static async Task<TestRepository> CreateAsync(PowaLab lab, string? powaVersion = null)
    {
        var name = $"repo_{Interlocked.Increment(ref _databases)}";
        await PowaLab.InstallPowaAsync(lab.Repository, withStatsExtensions: true, database: name, powaVersion: powaVersion);
        return new TestRepository(lab, name);
    }

    public string Database { get; } = database;
    public NpgsqlConnectionStringBuilder ConnectionString => lab.Repository.ConnectionString(Database);

    public Task<int> RegisterAsync(IPostgresInstance remote, int hostIndex, string alias, int frequency = 5,
        string? password = null, string dbname = PowaLab.Database, int? port = null, string[]? extensions = null) =>
        lab.RegisterAsync(remote.Host(hostIndex), port ?? remote.Port, alias, frequency, password ?? remote.Password,
            extensions, dbname: dbname, repositoryDatabase: Database);

    public async Task ExecAsync(string sql, params object[] args)
    {
        await using var conn = new NpgsqlConnection(ConnectionString.ConnectionString);
        await conn.OpenAsync();
        await using var cmd = new NpgsqlCommand(sql, conn);
        foreach (var a in args) cmd.Parameters.Add(new NpgsqlParameter { Value = a });
        await cmd.ExecuteNonQueryAsync();
    }

    public async Task<List<T>> ListAsync<T>(string sql, params object[] args)
    {
        await using var conn = new NpgsqlConnection(ConnectionString.ConnectionString);
        await conn.OpenAsync();
        await using var cmd = new NpgsqlCommand(sql, conn);
        foreach (var a in args) cmd.Parameters.Add(new NpgsqlParameter { Value = a });
        await using var r = await cmd.ExecuteReaderAsync();
        var list = new List<T>();
        while (await r.ReadAsync()) list.Add(r.IsDBNull(0) ? default! : r.GetFieldValue<T>(0));
        return list;
    }

    public async Task<T> ScalarAsync<T>(string sql, params object[] args) => (await ListAsync<T>(sql, args)).Single();

    /// <summary>What this repository is, as a node reads it at start (its spool's name).</summary>
    public async Task<string?> IdentityAsync()
    {
        await using var conn = new NpgsqlConnection(ConnectionString.ConnectionString);
        await conn.OpenAsync();
        return await Collector.Postgres.RepositoryQueries.IdentityAsync(conn, CancellationToken.None);
    }

    /// <summary>Times of the snapshots stored for a server (one powa_stat_bgwriter row per snapshot).</summary>
    public Task<List<DateTime>> SnapshotTimesAsync(int srvid) => ListAsync<DateTime>(
        "SELECT (record).ts FROM powa_stat_bgwriter_history_current WHERE srvid = $1 ORDER BY 1", srvid);

    /// <summary>Every one of the servers has a snapshot (taken after afterUtc, when given).</summary>
    public async Task<bool> AllSnapshottedAsync(IEnumerable<int> ids, DateTime? afterUtc = null)
    {
        foreach (var id in ids)
            if (!(await SnapshotTimesAsync(id)).Any(t => afterUtc is not { } after || t.ToUniversalTime() > after)) return false;
        return true;
    }

    public async Task<string[]> ErrorsAsync(int srvid) =>
        await ScalarAsync<string[]?>("SELECT errors FROM powa_snapshot_metas WHERE srvid = $1", srvid) ?? [];

    public Task<long> CountAsync(string table, int srvid) =>
        ScalarAsync<long>($"SELECT count(*) FROM {table} WHERE srvid = $1", srvid);

    /// <summary>Connections the collector holds on this repository database.</summary>
    public Task<long> CollectorConnectionsAsync() => ScalarAsync<long>(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'PoWA collector%'", Database);
}
