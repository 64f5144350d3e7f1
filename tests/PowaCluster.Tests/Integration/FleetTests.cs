using PowaCluster.Tests.Support;
using Xunit;

namespace PowaCluster.Tests.Integration;

[Collection(LabCollection.Name)]
public sealed class FleetTests(LabFixture fx)
{
    [Fact]
    public async Task Deactivated_server_stops_and_a_changed_port_is_followed()
    {
        var repo = await fx.NewRepositoryAsync();
        var r1 = fx.Lab.Remotes[0];
        var r2 = fx.Lab.Remotes[1];
        var deactivated = await repo.RegisterAsync(r1, 4, "to-deactivate");
        var moved = await repo.RegisterAsync(r1, 5, "to-move");
        await using var node = await CollectorNode.StartAsync(repo);
        await Eventually.HoldsAsync(async () =>
                (await repo.SnapshotTimesAsync(deactivated)).Count >= 1 && (await repo.SnapshotTimesAsync(moved)).Count >= 1,
            TimeSpan.FromSeconds(30), "first snapshots of both servers");

        await repo.ExecAsync("SELECT powa_deactivate_server($1)", deactivated);
        await repo.ExecAsync("SELECT powa_configure_server($1, json_build_object('port', $2::int, 'password', $3::text))", moved, r2.Port, r2.Password);
        // A resync (1 s here) plus a snapshot in flight, then nothing more for the deactivated server: its entity
        // stores what it read, then stops and closes its remote connection.
        await Eventually.HoldsAsync(async () => await r1.ScalarAsync<long>("postgres",
                $"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'PoWA collector - worker 127.0.0.4:{r1.Port}'") == 0,
            TimeSpan.FromSeconds(15), "the deactivated server's worker connection closed");
        var frozen = (await repo.SnapshotTimesAsync(deactivated)).Count;
        var movedBefore = (await repo.SnapshotTimesAsync(moved)).Count;

        // The moved server is now collected from the second remote instance.
        await Eventually.HoldsAsync(async () => await r2.ScalarAsync<long>("postgres",
                $"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'PoWA collector - worker 127.0.0.5:{r2.Port}'") == 1,
            TimeSpan.FromSeconds(15), "a worker connection on the new port");
        Assert.Equal(0, await r1.ScalarAsync<long>("postgres",
            $"SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'PoWA collector - worker 127.0.0.%:{r1.Port}'"));
        await Eventually.HoldsAsync(async () => (await repo.SnapshotTimesAsync(moved)).Count >= movedBefore + 2,
            TimeSpan.FromSeconds(20), "two more snapshots of the moved server");
        Assert.Equal(frozen, (await repo.SnapshotTimesAsync(deactivated)).Count);
        Assert.Empty(await repo.ErrorsAsync(moved));
    }

    [Fact]
    public async Task Servers_registered_together_start_at_random_phases_and_share_a_bounded_pool()
    {
        var repo = await fx.NewRepositoryAsync();
        var ids = new List<int>();
        for (var i = 0; i < 10; i++)
            ids.Add(await repo.RegisterAsync(fx.Lab.Remotes[i % 2], 6 + i / 2, $"phase-{i}", frequency: 20));
        var settings = CollectorNode.FastSettings();
        settings.WriterPoolSize = 2;
        long maxConnections = 0;
        await using (await CollectorNode.StartAsync(repo, settings))
        {
            await Eventually.HoldsAsync(async () =>
            {
                maxConnections = Math.Max(maxConnections, await repo.CollectorConnectionsAsync());
                var counts = await Task.WhenAll(ids.Select(repo.SnapshotTimesAsync));
                return counts.All(c => c.Count >= 1);
            }, TimeSpan.FromSeconds(40), "a first snapshot of all 10 servers");
        }
        var firsts = new List<DateTime>();
        foreach (var id in ids) firsts.Add((await repo.SnapshotTimesAsync(id))[0]);
        var span = (firsts.Max() - firsts.Min()).TotalSeconds;
        // Ten phases drawn in a 20 s interval: they spread, they do not all fire at once.
        Assert.True(span > 6, $"first snapshots span only {span:F1} s");
        Assert.True(firsts.GroupBy(t => (long)(t.Ticks / TimeSpan.TicksPerSecond)).Max(g => g.Count()) <= 5,
            "more than half the servers fired in the same second");
        // Pool of 2 writers + the coordinator's connection (+1 slack for the start-up check).
        Assert.InRange(maxConnections, 1, settings.WriterPoolSize + 2);
        foreach (var id in ids) Assert.Empty(await repo.ErrorsAsync(id));
    }
}
