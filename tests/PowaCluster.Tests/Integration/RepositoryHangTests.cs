using Akka.Actor;
using Akka.Hosting;
using PowaCluster.Collector.Actors;
using PowaCluster.Lab.Embedded;
using PowaCluster.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace PowaCluster.Tests.Integration;

/// <summary>
/// A repository that accepts connections and answers nothing (SIGSTOP of its postmaster and backends) for
/// much longer than the entities' lease: the coordinator's read of powa_servers hangs, yet every lease is
/// renewed, no entity stops, no remote connection is dropped, and snapshots resume within an interval of
/// the thaw. (The fault script runs the same for 60 s and 10 minutes with the default settings.)
/// </summary>
[Collection(LabCollection.Name)]
public sealed class RepositoryHangTests(LabFixture fx, ITestOutputHelper output)
{
    [Fact]
    public async Task A_hung_repository_leaves_every_server_in_place_and_snapshots_resume_after_it()
    {
        if (fx.Lab.Repository is not LocalPostgres instance) return; // a container cannot be frozen from here
        var repo = await fx.NewRepositoryAsync();
        var remote = fx.Lab.Remotes[1];
        var ids = new List<int>();
        for (var i = 0; i < 3; i++) ids.Add(await repo.RegisterAsync(remote, 41 + i, $"hang-{i}", frequency: 5));
        var s = CollectorNode.FastSettings();
        s.ResyncInterval = TimeSpan.FromSeconds(1);
        s.EntityLeaseIntervals = 3;                   // a lease of 3 s (a tick of slack); the freeze lasts 5 times that
        s.RepositoryTimeout = TimeSpan.FromSeconds(30); // longer than the freeze: every repository call hangs through it
        await using var node = await CollectorNode.StartAsync(repo, s);
        await Eventually.HoldsAsync(() => repo.AllSnapshottedAsync(ids), TimeSpan.FromSeconds(30), "a first snapshot of every server");
        var workers = await WorkerPidsAsync(remote);
        Assert.Equal(3, workers.Count);

        var region = ActorRegistry.For(node.System).Get<ServerCollector>();
        var frozenAt = DateTime.UtcNow;
        instance.Freeze();
        try
        {
            await Task.Delay(TimeSpan.FromSeconds(16));
            // Every entity still runs (a stopped one would be started again by the ask, with no remote connection yet).
            foreach (var id in ids)
            {
                var status = await region.Ask<ServerStatus>(new GetServerStatus(id), TimeSpan.FromSeconds(3));
                output.WriteLine($"server {id} during the freeze: {status.Status}, {status.Snapshots} stored, last error {status.LastError ?? "-"}");
                Assert.NotEqual(CollectorStatus.Stopping, status.Status);
            }
            Assert.Equal(workers, await WorkerPidsAsync(remote));
        }
        finally { instance.Thaw(); }
        var thawed = DateTime.UtcNow;

        // Snapshots resume within about an interval (5 s) of the thaw; the snapshots read during the freeze are
        // stored too, with their own times; the remote connections are the same ones.
        await Eventually.HoldsAsync(() => repo.AllSnapshottedAsync(ids, thawed), TimeSpan.FromSeconds(12), "a snapshot of every server after the thaw");
        output.WriteLine($"resumed {(DateTime.UtcNow - thawed).TotalSeconds:F1} s after the thaw");
        foreach (var id in ids)
        {
            var during = (await repo.SnapshotTimesAsync(id)).Count(t => t.ToUniversalTime() > frozenAt && t.ToUniversalTime() < thawed);
            output.WriteLine($"server {id}: {during} snapshots taken during the freeze and stored after it");
            Assert.True(during >= 1, $"server {id}: no snapshot of the freeze stored");
        }
        Assert.Equal(workers, await WorkerPidsAsync(remote));
    }

    /// <summary>The backends of the three servers' remote connections.</summary>
    static async Task<List<int>> WorkerPidsAsync(IPostgresInstance remote)
    {
        await using var conn = new Npgsql.NpgsqlConnection(remote.ConnectionString().ConnectionString);
        await conn.OpenAsync();
        await using var cmd = new Npgsql.NpgsqlCommand(
            "SELECT pid FROM pg_stat_activity WHERE application_name = ANY($1) ORDER BY pid", conn)
        { Parameters = { new() { Value = new[] { 41, 42, 43 }.Select(i => $"PoWA collector - worker {remote.Host(i)}:{remote.Port}").ToArray() } } };
        var pids = new List<int>();
        await using var r = await cmd.ExecuteReaderAsync();
        while (await r.ReadAsync()) pids.Add(r.GetInt32(0));
        return pids;
    }
}
