using Npgsql;
using PowaCluster.Lab.Embedded;
using Xunit;

namespace PowaCluster.Tests.Support;

/// <summary>
/// The one shared PostgreSQL fixture: a repository instance and two remote instances (each reachable on
/// 50 loopback addresses), started once for the whole test run and always stopped and deleted at the end:
/// throwaway local instances, or containers where a Docker engine is reachable (ContainerPostgres).
/// Each test takes a fresh repository database on the repository instance, so tests do not see each
/// other's servers.
/// </summary>
public sealed class LabFixture : IAsyncLifetime
{
    public PowaLab Lab { get; private set; } = null!;

    /// <summary>
    /// The PoWA 5 releases the PoWA 5 tests run on: each archivist 5 that scripts/install-deps.sh built from
    /// ../shared/vendor into a tree of its own (5.1.2 and 5.3.0 today; a new tarball there is tested with no code).
    /// None without ../shared/vendor: the PoWA 5 tests are then skipped (Powa5Theory).
    /// </summary>
    public static IReadOnlyList<string> Powa5Releases { get; } = LocalPostgres.PowaReleases.Where(r => r.StartsWith("5.")).ToList();

    /// <summary>A repository and two remotes per PoWA 5 release (Powa5Releases).</summary>
    public IReadOnlyDictionary<string, PowaLab> Powa5 { get; private set; } = new Dictionary<string, PowaLab>();

    /// <summary>The set-up of one PoWA 5 release.</summary>
    public PowaLab Powa5Lab(string release) => Powa5.TryGetValue(release, out var lab) ? lab
        : throw new InvalidOperationException($"no PoWA {release} set-up (built here: {string.Join(", ", Powa5Releases)})");

    int _databases;

    /// <summary>A throwaway CA for the multi-node tests' cluster TLS (Settings(name) gives a node's files).</summary>
    public LabCertificates Certificates { get; } = LabCertificates.Create("powa-cluster test CA");

    /// <summary>A remote database with powa but without pg_qualstats.</summary>
    public const string NoQualstatsDb = "powa_noqual";

    public async Task InitializeAsync()
    {
        var powa5 = Powa5Releases.ToDictionary(r => r, r => PowaLab.StartAsync(remotes: 2, loopbackAddresses: 24,
            factory: LocalPostgres.PowaFactory(r)));
        try
        {
            Lab = await PowaLab.StartAsync(remotes: 2, loopbackAddresses: 50,
                factory: ContainerPostgres.ShouldUse() ? ContainerPostgres.Factory : LocalPostgres.Factory);
        }
        finally
        {
            var started = new Dictionary<string, PowaLab>();
            Exception? failed = null;
            foreach (var (release, lab) in powa5)
            {
                try { started[release] = await lab; }
                catch (Exception e) { failed ??= e; }
            }
            Powa5 = started;
            if (failed is not null) throw failed;
        }
        var r = Lab.Remotes[0];
        await r.ExecAsync("postgres", $"CREATE DATABASE {NoQualstatsDb}");
        await r.ExecAsync(NoQualstatsDb, "CREATE EXTENSION pg_stat_statements; CREATE EXTENSION btree_gist; CREATE EXTENSION powa; " +
                                         "CREATE EXTENSION pg_stat_kcache; CREATE EXTENSION pg_wait_sampling;");
    }

    public async Task DisposeAsync()
    {
        foreach (var lab in Powa5.Values) await lab.DisposeAsync();
        if (Lab is not null) await Lab.DisposeAsync();
        Certificates.Dispose();
    }

    /// <summary>
    /// A new, empty PoWA repository database: PoWA 4, or on the set-up of a PoWA 5 release (<paramref name="powa5"/>);
    /// <paramref name="version"/> installs an older powa of that tree (CREATE EXTENSION powa VERSION), to update later.
    /// </summary>
    public async Task<TestRepository> NewRepositoryAsync(string? powa5 = null, string? version = null)
    {
        var lab = powa5 is null ? Lab : Powa5Lab(powa5);
        var name = $"repo_{Interlocked.Increment(ref _databases)}";
        await PowaLab.InstallPowaAsync(lab.Repository, withStatsExtensions: true, database: name, powaVersion: version);
        return new TestRepository(lab, name);
    }
}

/// <summary>A test run once per PoWA 5 release built here (Powa5Releases); skipped, and counted so, where none is.</summary>
public sealed class Powa5TheoryAttribute : TheoryAttribute
{
    public Powa5TheoryAttribute()
    {
        if (LabFixture.Powa5Releases.Count == 0)
            Skip = "no archivist 5 is built here (scripts/install-deps.sh builds them from ../shared/vendor)";
    }
}

/// <summary>The PoWA 5 releases built here, one test case each (with Powa5Theory).</summary>
public sealed class Powa5ReleasesAttribute : Xunit.Sdk.DataAttribute
{
    public override IEnumerable<object[]> GetData(System.Reflection.MethodInfo testMethod) =>
        LabFixture.Powa5Releases.Count == 0 ? [["none"]] : LabFixture.Powa5Releases.Select(r => new object[] { r });
}

[CollectionDefinition(Name)]
public sealed class LabCollection : ICollectionFixture<LabFixture>
{
    public const string Name = "PostgreSQL lab";
}

/// <summary>One repository database, and the queries tests assert with.</summary>
public sealed class TestRepository(PowaLab lab, string database)
{
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
