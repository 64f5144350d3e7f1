using Npgsql;
using PowaCluster.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace PowaCluster.Tests.Integration;

/// <summary>
/// The repository itself fences snapshots: while another transaction (a collector on another node, one cut off
/// by a partition or frozen and woken) holds a server's powa_snapshot_metas row, this collector skips that
/// server's snapshots without writing anything or recording an error, and resumes when it is released.
/// </summary>
[Collection(LabCollection.Name)]
public sealed class ConcurrentSnapshotTests(LabFixture fx, ITestOutputHelper output)
{
    [Fact]
    public async Task A_snapshot_held_by_another_collector_is_skipped_not_doubled()
    {
        var repo = await fx.NewRepositoryAsync();
        var srvid = await repo.RegisterAsync(fx.Lab.Remotes[1], 48, "fence", frequency: 5);
        await using var node = await CollectorNode.StartAsync(repo);
        await Eventually.HoldsAsync(async () => (await repo.SnapshotTimesAsync(srvid)).Count >= 1, TimeSpan.FromSeconds(20), "a first snapshot");

        await using (var other = new NpgsqlConnection(repo.ConnectionString.ConnectionString))
        {
            await other.OpenAsync();
            await using var tx = await other.BeginTransactionAsync();
            await using (var lockRow = new NpgsqlCommand("SELECT 1 FROM powa_snapshot_metas WHERE srvid = $1 FOR UPDATE", other, tx)
                { Parameters = { new() { Value = srvid } } })
                await lockRow.ExecuteNonQueryAsync();
            var held = (await repo.SnapshotTimesAsync(srvid)).Count;
            await Task.Delay(TimeSpan.FromSeconds(12)); // two intervals and more
            Assert.Equal(held, (await repo.SnapshotTimesAsync(srvid)).Count);
            await tx.RollbackAsync();
        }
        Assert.Empty(await repo.ErrorsAsync(srvid));
        var before = (await repo.SnapshotTimesAsync(srvid)).Count;
        await Eventually.HoldsAsync(async () => (await repo.SnapshotTimesAsync(srvid)).Count > before, TimeSpan.FromSeconds(10), "snapshots again");
        Assert.Empty(await repo.ErrorsAsync(srvid));
        output.WriteLine($"{before} snapshots before the release, more after it");
    }
}
