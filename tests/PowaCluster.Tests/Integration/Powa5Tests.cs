using PowaCluster.Lab.Embedded;
using PowaCluster.Tests.Support;
using Xunit;

namespace PowaCluster.Tests.Integration;

/// <summary>PoWA 5: archivist 5.1.2 on the repository and the remotes (built from ../shared/vendor).</summary>
[Collection(LabCollection.Name)]
public sealed class Powa5Tests(LabFixture fx)
{
    /// <summary>History tables every PoWA 5 snapshot of a lab server writes rows to (global datasources).</summary>
    static readonly string[] GlobalHistory =
    [
        "powa_statements_history_current", "powa_kcache_metrics_current", "powa_wait_sampling_history_current",
        "powa_qualstats_quals_history_current", "powa_stat_bgwriter_history_current", "powa_stat_activity_history_current",
    ];

    [Powa5Fact]
    public async Task A_powa5_server_is_snapshotted_into_the_global_datasources_with_no_error()
    {
        var repo = await fx.NewRepositoryAsync(powa5: true);
        var remote = fx.Powa5!.Remotes[0];
        var srvid = await repo.RegisterAsync(remote, 1, "p5");
        await using (await CollectorNode.StartAsync(repo))
        {
            await Eventually.HoldsAsync(async () => (await repo.SnapshotTimesAsync(srvid)).Count >= 3,
                TimeSpan.FromSeconds(40), "3 snapshots of the PoWA 5 server", () => PowaLab.WorkAsync(remote));
        }
        Assert.Empty(await repo.ErrorsAsync(srvid));
        foreach (var table in GlobalHistory)
            Assert.True(await repo.CountAsync(table, srvid) > 0, $"{table} has no row for server {srvid}");
        // Versions go to powa_extension_config in PoWA 5.
        var kcache = await remote.ScalarAsync<string>(PowaLab.Database, "SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_kcache'");
        Assert.Equal(kcache, await repo.ScalarAsync<string>(
            "SELECT version FROM powa_extension_config WHERE srvid = $1 AND extname = 'pg_stat_kcache'", srvid));
    }

    [Powa5Fact]
    public async Task A_powa4_remote_in_a_powa5_repository_gets_a_clear_error_and_the_others_go_on()
    {
        var repo = await fx.NewRepositoryAsync(powa5: true);
        var old = await repo.RegisterAsync(fx.Lab.Remotes[0], 3, "p4-in-p5");
        var good = await repo.RegisterAsync(fx.Powa5!.Remotes[1], 2, "p5-ok");
        await using (await CollectorNode.StartAsync(repo))
        {
            await Eventually.HoldsAsync(async () => (await repo.SnapshotTimesAsync(good)).Count >= 2 &&
                                                    (await repo.ErrorsAsync(old)).Length > 0,
                TimeSpan.FromSeconds(40), "the PoWA 5 server snapshotted and the PoWA 4 one refused");
        }
        var error = Assert.Single(await repo.ErrorsAsync(old));
        Assert.Contains("the remote server has powa 4.1.4 but the repository has powa 5.1.2", error);
        Assert.Empty(await repo.SnapshotTimesAsync(old));
        Assert.Empty(await repo.ErrorsAsync(good));
    }
}
