using PowaCluster.Lab.Embedded;
using Xunit;

namespace PowaCluster.Tests.Support;

/// <summary>
/// One PoWA set-up (a repository instance and two remote instances) per archivist release the suite tests:
/// Debian's 4.1.4, and each archivist 5 that scripts/install-deps.sh built from ../shared/vendor into a tree of
/// its own (5.1.2 and 5.3.0 today; a new tarball there is tested with no code). Started once, in parallel, for
/// the PoWA 5 and powa-web tests, which run in a collection of their own beside the main lab's (LabFixture).
/// </summary>
public sealed class PowaReleasesFixture : IAsyncLifetime
{
    /// <summary>Debian 12's archivist, the suite's PoWA 4.</summary>
    public const string Powa4 = "4.1.4";

    /// <summary>The archivist 5 releases built here, oldest first; none without ../shared/vendor (Powa5Theory skips).</summary>
    public static IReadOnlyList<string> Powa5Releases { get; } = LocalPostgres.PowaReleases.Where(r => r.StartsWith("5.")).ToList();

    Dictionary<string, PowaLab> _labs = [];

    public async Task InitializeAsync()
    {
        var starting = new Dictionary<string, Task<PowaLab>>
        {
            [Powa4] = PowaLab.StartAsync(remotes: 2, loopbackAddresses: 24,
                factory: ContainerPostgres.ShouldUse() ? ContainerPostgres.Factory : LocalPostgres.Factory),
        };
        foreach (var r in Powa5Releases)
            starting[r] = PowaLab.StartAsync(remotes: 2, loopbackAddresses: 24, factory: LocalPostgres.PowaFactory(r));
        Exception? failed = null;
        foreach (var (release, lab) in starting)
        {
            try { _labs[release] = await lab; }
            catch (Exception e) { failed ??= e; }
        }
        if (failed is not null) throw failed; // the labs started are disposed with the fixture
    }

    public async Task DisposeAsync()
    {
        foreach (var lab in _labs.Values) await lab.DisposeAsync();
    }

    /// <summary>The set-up of one archivist release (Powa4 or one of Powa5Releases).</summary>
    public PowaLab Lab(string release) => _labs.TryGetValue(release, out var lab) ? lab
        : throw new InvalidOperationException($"no PoWA {release} set-up (archivists here: {string.Join(", ", _labs.Keys)})");

    /// <summary>A new, empty repository database on a release's set-up (<paramref name="powaVersion"/>: an older powa of its tree).</summary>
    public Task<TestRepository> NewRepositoryAsync(string release, string? powaVersion = null) =>
        TestRepository.CreateAsync(Lab(release), powaVersion);
}

[CollectionDefinition(Name)]
public sealed class PowaReleasesCollection : ICollectionFixture<PowaReleasesFixture>
{
    public const string Name = "PoWA releases";
}

/// <summary>A test run once per archivist 5 release built here (Powa5Releases); skipped, and counted so, where none is.</summary>
public sealed class Powa5TheoryAttribute : TheoryAttribute
{
    public Powa5TheoryAttribute()
    {
        if (PowaReleasesFixture.Powa5Releases.Count == 0)
            Skip = "no archivist 5 is built here (scripts/install-deps.sh builds them from ../shared/vendor)";
    }
}

/// <summary>
/// A test of the oldest and the newest archivist 5 built here (Older, Newer), when they are of two major.minor
/// versions (5.1.2 and 5.3.0 today); skipped, and counted so, otherwise.
/// </summary>
public sealed class Powa5MinorsFactAttribute : FactAttribute
{
    public static string Older => PowaReleasesFixture.Powa5Releases[0];
    public static string Newer => PowaReleasesFixture.Powa5Releases[^1];

    public Powa5MinorsFactAttribute()
    {
        var minors = PowaReleasesFixture.Powa5Releases.Select(r => string.Join('.', r.Split('.').Take(2))).Distinct().Count();
        if (minors < 2) Skip = "needs archivists 5 of two major.minor versions (scripts/install-deps.sh builds them from ../shared/vendor)";
    }
}

/// <summary>
/// One test case per release of a list; with none, one case ("none") that its theory attribute skips (xunit
/// refuses a theory without data).
/// </summary>
public abstract class ReleasesDataAttribute : Xunit.Sdk.DataAttribute
{
    protected abstract IReadOnlyList<string> Releases { get; }

    public override IEnumerable<object[]> GetData(System.Reflection.MethodInfo testMethod) =>
        Releases.Count == 0 ? [["none"]] : Releases.Select(r => new object[] { r });
}

/// <summary>The archivist 5 releases built here, one test case each (with Powa5Theory).</summary>
public sealed class Powa5ReleasesAttribute : ReleasesDataAttribute
{
    protected override IReadOnlyList<string> Releases => PowaReleasesFixture.Powa5Releases;
}
