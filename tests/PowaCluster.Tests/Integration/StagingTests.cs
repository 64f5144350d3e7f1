using PowaCluster.Lab.Embedded;
using PowaCluster.Tests.Support;
using Xunit;

namespace PowaCluster.Tests.Integration;

/// <summary>
/// The snapshot path: read the remote into a stage, then store the stage. A remote that hangs or dies costs
/// its own server only; a stage beyond the memory budget goes through a file.
/// </summary>
[Collection(LabCollection.Name)]
public sealed class StagingTests(LabFixture fx)
{
    /// <summary>An instance of the test's own, to freeze or kill, with PoWA and some activity.</summary>
    static async Task<LocalPostgres> OwnRemoteAsync(string name)
    {
        var pg = await LocalPostgres.StartAsync(name, loopbackAddresses: 4);
        await PowaLab.InstallPowaAsync(pg, withStatsExtensions: true);
        await PowaLab.MakeWorkloadAsync(pg);
        return pg;
    }

    [Fact]
    public async Task A_frozen_remote_costs_only_its_own_servers_the_others_keep_their_schedule()
    {
        var repo = await fx.NewRepositoryAsync();
        await using var frozen = await OwnRemoteAsync("frozen");
        var healthy = new List<int>();
        var hung = new List<int>();
        for (var i = 1; i <= 4; i++)
        {
            healthy.Add(await repo.RegisterAsync(fx.Lab.Remotes[0], 30 + i, $"healthy-{i}"));
            hung.Add(await repo.RegisterAsync(frozen, i, $"hung-{i}"));
        }
        var settings = CollectorNode.FastSettings(); // 2 writers: fewer than the servers of the frozen remote
        await using var node = await CollectorNode.StartAsync(repo, settings);
        await Eventually.HoldsAsync(() => repo.AllSnapshottedAsync(healthy.Concat(hung)), TimeSpan.FromSeconds(40),
            "a first snapshot of every server");

        var window = TimeSpan.FromSeconds(30); // longer than RemoteTimeout (20 s): the hung reads time out inside it
        var from = DateTime.UtcNow;
        frozen.Freeze();
        List<string> errors;
        try
        {
            await Task.Delay(window);
            // Before the thaw (a snapshot stored afterwards resets them): the frozen remote's servers said why.
            errors = (await Task.WhenAll(hung.Select(repo.ErrorsAsync))).SelectMany(e => e).ToList();
        }
        finally { frozen.Thaw(); }
        var to = from + window;

        // 30 s at 5 s: 6 snapshots due per server, 24 in all; one may fall on an edge of the window.
        var got = new List<int>();
        foreach (var id in healthy) got.Add((await repo.SnapshotTimesAsync(id)).Count(t => t >= from && t < to));
        Assert.True(got.Sum() >= 23, $"the healthy servers got {string.Join(" + ", got)} snapshots in the 30 s their neighbour was frozen (24 due)");
        Assert.Contains(errors, e => e.Contains("did not answer within 20 s") || e.Contains("timed out"));
        // And they take snapshots again once it answers.
        var thawed = DateTime.UtcNow;
        await Eventually.HoldsAsync(async () =>
        {
            foreach (var id in hung)
                if (!(await repo.SnapshotTimesAsync(id)).Any(t => t > thawed)) return false;
            return true;
        }, TimeSpan.FromSeconds(40), "a snapshot of every server of the thawed remote");
    }

    [Fact]
    public async Task A_stage_beyond_the_memory_budget_goes_through_a_file_and_stores_the_same_rows()
    {
        var repo = await fx.NewRepositoryAsync();
        var remote = fx.Lab.Remotes[1];
        var spilled = await repo.RegisterAsync(remote, 41, "spilled");
        var dir = Directory.CreateTempSubdirectory("powa-cluster-stage-test-").FullName;
        try
        {
            var settings = CollectorNode.FastSettings();
            settings.StageMemoryBudget = 0; // every byte through the file
            settings.StageDirectory = dir;
            await using (var node = await CollectorNode.StartAsync(repo, settings))
            {
                await Eventually.HoldsAsync(async () => (await repo.SnapshotTimesAsync(spilled)).Count >= 2,
                    TimeSpan.FromSeconds(30), "2 snapshots staged in a file", () => PowaLab.WorkAsync(remote));
                var stats = node.Runtime.Stages.Stats();
                Assert.True(stats.SpilledStages >= 2, $"{stats.SpilledStages} stages went to a file");
                Assert.True(stats.SpilledBytes > 1000, $"{stats.SpilledBytes} bytes went to a file");
                Assert.Equal(0, stats.UsedBytes);
            }
            foreach (var table in SnapshotTests.HistoryTables)
                Assert.True(await repo.CountAsync(table, spilled) > 0, $"{table} has no row for the spilled server");
            Assert.Empty(await repo.ErrorsAsync(spilled));
            // The same statements as the remote has (its counters move on, its entries do not go away).
            var stored = await repo.ScalarAsync<long>(
                "SELECT count(DISTINCT queryid) FROM powa_statements_history_current WHERE srvid = $1", spilled);
            var onRemote = await fx.Lab.Remotes[1].ScalarAsync<long>(PowaLab.Database,
                "SELECT count(*) FROM pg_stat_statements WHERE dbid IS NOT NULL");
            Assert.InRange(stored, 1, onRemote);
            Assert.Empty(Directory.EnumerateFiles(dir));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public async Task A_remote_that_dies_mid_read_leaves_no_repository_transaction_and_no_stage_file()
    {
        var repo = await fx.NewRepositoryAsync();
        var doomed = await OwnRemoteAsync("doomed");
        var dir = Directory.CreateTempSubdirectory("powa-cluster-stage-test-").FullName;
        try
        {
            var victims = new[] { await repo.RegisterAsync(doomed, 1, "doomed-1"), await repo.RegisterAsync(doomed, 2, "doomed-2") };
            var healthy = await repo.RegisterAsync(fx.Lab.Remotes[0], 45, "healthy");
            var settings = CollectorNode.FastSettings();
            settings.StageMemoryBudget = 0;
            settings.StageDirectory = dir;
            await using var node = await CollectorNode.StartAsync(repo, settings);
            await Eventually.HoldsAsync(() => repo.AllSnapshottedAsync([.. victims, healthy]), TimeSpan.FromSeconds(40),
                "a first snapshot of every server");

            // Frozen past the next due snapshots, so that reads are in flight, then killed.
            doomed.Freeze();
            // Past the next due snapshots (same interval): the healthy server stores two more meanwhile.
            var healthyBefore = (await repo.SnapshotTimesAsync(healthy)).Count;
            await Eventually.HoldsAsync(async () => (await repo.SnapshotTimesAsync(healthy)).Count >= healthyBefore + 2, TimeSpan.FromSeconds(30),
                "two more snapshots of the healthy server");
            doomed.Kill();
            var killed = DateTime.UtcNow;

            await Eventually.HoldsAsync(async () =>
            {
                foreach (var id in victims)
                    if (!(await repo.ErrorsAsync(id)).Any(e => e.Contains("lost the connection") || e.Contains("cannot connect"))) return false;
                return true;
            }, TimeSpan.FromSeconds(30), "the dead remote's servers report it");
            // No transaction of the collector left open on the repository, and no stage file anywhere.
            Assert.Equal(0, await repo.ScalarAsync<long>(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'PoWA collector%' " +
                "AND xact_start < now() - interval '3 s'"));
            Assert.Empty(Directory.EnumerateFiles(dir));
            Assert.Equal(0, node.Runtime.Stages.UsedBytes);
            // The other server did not notice.
            await Eventually.HoldsAsync(async () => (await repo.SnapshotTimesAsync(healthy)).Any(t => t > killed),
                TimeSpan.FromSeconds(15), "a snapshot of the healthy server after the kill");
        }
        finally
        {
            await doomed.DisposeAsync();
            Directory.Delete(dir, recursive: true);
        }
    }
}
