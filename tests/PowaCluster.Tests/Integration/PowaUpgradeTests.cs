using PowaCluster.Lab.Embedded;
using PowaCluster.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace PowaCluster.Tests.Integration;

/// <summary>
/// Two archivist 5 releases of different major.minor (5.1.2 and 5.3.0 today: their subscription_stats tables
/// differ): a remote and a repository that differ, and PoWA updated (ALTER EXTENSION powa UPDATE) on the
/// repository and the remotes, in turn, while one node collects.
/// </summary>
[Collection(PowaReleasesCollection.Name)]
public sealed class PowaUpgradeTests(PowaReleasesFixture fx, ITestOutputHelper output)
{
    static string Older => Powa5MinorsFactAttribute.Older;
    static string Newer => Powa5MinorsFactAttribute.Newer;

    static string Mismatch(string remote, string repository) =>
        $"the remote server has powa {remote} but the repository has powa {repository}: they must have the same major.minor version";

    [Powa5MinorsFact]
    public async Task A_remote_of_an_older_powa_5_gets_the_mismatch_error_and_the_others_go_on()
    {
        var repo = await fx.NewRepositoryAsync(Newer);
        var old = await repo.RegisterAsync(fx.Lab(Older).Remotes[0], 6, "p5-older");
        var good = await repo.RegisterAsync(fx.Lab(Newer).Remotes[1], 6, "p5-newer");
        await using (await CollectorNode.StartAsync(repo))
        {
            await Eventually.HoldsAsync(async () => (await repo.SnapshotTimesAsync(good)).Count >= 2 &&
                                                    (await repo.ErrorsAsync(old)).Length > 0,
                TimeSpan.FromSeconds(40), "the newer server snapshotted and the older one refused");
        }
        Assert.Contains(Mismatch(Older, Newer), Assert.Single(await repo.ErrorsAsync(old)));
        Assert.Empty(await repo.SnapshotTimesAsync(old));
        Assert.Empty(await repo.ErrorsAsync(good));
    }

    [Powa5MinorsFact]
    public async Task Powa_updated_on_a_remote_then_the_repository_then_the_other_remote_while_collecting()
    {
        // Everything on the newer release's instances, whose tree also has the older release's SQL: the
        // repository and two remote databases start with the older powa, then each is updated in turn.
        var lab = fx.Lab(Newer);
        var repo = await fx.NewRepositoryAsync(Newer, powaVersion: Older);
        var remote = lab.Remotes[0];
        var (dbA, dbB) = ($"upg_a_{Guid.NewGuid():N}"[..14], $"upg_b_{Guid.NewGuid():N}"[..14]);
        foreach (var db in new[] { dbA, dbB })
            await PowaLab.InstallPowaAsync(remote, withStatsExtensions: true, database: db, powaVersion: Older);
        try
        {
            var a = await repo.RegisterAsync(remote, 7, "upg-a", dbname: dbA);
            var b = await repo.RegisterAsync(remote, 8, "upg-b", dbname: dbB);
            await using var node = await CollectorNode.StartAsync(repo);
            var system = node.System;
            var t0 = DateTime.UtcNow;
            var timeline = new List<string>();
            void Say(string what)
            {
                var line = $"{(DateTime.UtcNow - t0).TotalSeconds,6:F1} s  {what}";
                timeline.Add(line);
                output.WriteLine(line);
            }
            async Task<int> Count(int id) => (await repo.SnapshotTimesAsync(id)).Count;
            async Task Grows(int id, string what)
            {
                var n = await Count(id);
                await Eventually.HoldsAsync(async () => await Count(id) >= n + 2, TimeSpan.FromSeconds(40), what);
            }
            async Task Refused(int id, string remotePowa, string repositoryPowa, int other, string what)
            {
                await Eventually.HoldsAsync(async () => (await repo.ErrorsAsync(id)).Any(e => e.Contains(Mismatch(remotePowa, repositoryPowa))),
                    TimeSpan.FromSeconds(40), what);
                // Refused, and nothing stored meanwhile: while the other server gets two more snapshots, this one none.
                var n = await Count(id);
                await Grows(other, $"server {other} collected while server {id} is refused");
                Assert.Equal(n, await Count(id));
            }

            await Grows(a, "server a collected on " + Older);
            await Grows(b, "server b collected on " + Older);
            Say($"both servers stored ({Older} everywhere)");

            await remote.ExecAsync(dbA, "ALTER EXTENSION powa UPDATE");
            Say($"remote database of server a updated to {Newer}");
            await Refused(a, Newer, Older, b, "server a refused (remote newer than the repository)");
            Say("server a not stored for two intervals of server b: mismatch error");

            await repo.ExecAsync("ALTER EXTENSION powa UPDATE");
            Say($"repository updated to {Newer}");
            await Grows(a, "server a collected again once its remote and the repository match");
            Say("server a stored again");
            await Refused(b, Older, Newer, a, "server b refused (remote older than the repository)");
            Say("server b not stored for two intervals of server a: mismatch error");

            await remote.ExecAsync(dbB, "ALTER EXTENSION powa UPDATE");
            Say($"remote database of server b updated to {Newer}");
            await Grows(b, "server b collected again");
            Say("server b stored again");
            await Grows(a, "server a still collected");

            // The same node throughout (no restart), and nothing of another shape ever stored: the only errors
            // are the mismatches, none from a COPY into a table of the other release.
            Assert.Same(system, node.System);
            Assert.False(system.WhenTerminated.IsCompleted);
            foreach (var id in new[] { a, b })
            {
                var errors = await repo.ErrorsAsync(id);
                Assert.All(errors, e => Assert.Contains("they must have the same major.minor version", e));
            }
            output.WriteLine(string.Join("\n", timeline));
        }
        finally
        {
            foreach (var db in new[] { dbA, dbB })
                await remote.ExecAsync("postgres", $"DROP DATABASE IF EXISTS {db} WITH (FORCE)");
        }
    }

    [Powa5Theory, Powa5Releases]
    public async Task A_powa_4_repository_under_an_archivist_5_is_a_start_up_error_that_says_what_to_do(string release)
    {
        // The tree of an archivist 5 also has Debian's 4.1.4 SQL: a PoWA 4 repository whose packages moved to PoWA 5.
        var repo = await fx.NewRepositoryAsync(release, powaVersion: PowaReleasesFixture.Powa4);
        var (code, stdout, stderr) = await StartupErrorTests.RunAsync("run", "--repository", repo.ConnectionString.ConnectionString);
        output.WriteLine(stdout + stderr);
        Assert.Equal(78, code); // EX_CONFIG: the systemd unit does not restart it (RestartPreventExitStatus)
        Assert.Contains($"has powa {PowaReleasesFixture.Powa4}, but its PostgreSQL now has archivist {release} installed", stderr);
        Assert.Contains("CREATE EXTENSION powa CASCADE in a new database", stderr);
        Assert.DoesNotContain(repo.ConnectionString.Password!, stdout + stderr);
    }
}
