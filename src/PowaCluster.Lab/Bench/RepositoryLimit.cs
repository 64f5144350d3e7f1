using System.Diagnostics;
using Npgsql;
using PowaCluster.Collector.Postgres;
using PowaCluster.Collector.Staging;

namespace PowaCluster.Lab.Bench;

/// <summary>
/// The repository's own limit: snapshots stored back to back (binary COPY into the *_src_tmp tables and
/// powa_take_snapshot, the collector's own store code) on a number of connections, with no collector cost
/// in between: one stage per server read once beforehand, stored again and again.
/// </summary>
public static class RepositoryLimit
{
    public static async Task<List<SnapshotStage>> ReadStagesAsync(NpgsqlConnectionStringBuilder repo,
        IReadOnlyList<(int SrvId, NpgsqlConnectionStringBuilder Remote)> servers)
    {
        var budget = new StageBudget(long.MaxValue, StageBudget.DefaultDirectory());
        var stages = new List<SnapshotStage>();
        await using var r = new NpgsqlConnection(repo.ConnectionString);
        await r.OpenAsync();
        foreach (var (srvid, remote) in servers)
        {
            var datasources = await SnapshotStore.GetDatasourcesAsync(r, srvid, CancellationToken.None);
            await using var c = new NpgsqlConnection(remote.ConnectionString);
            await c.OpenAsync();
            var stage = new SnapshotStage(srvid, remote.Host!, budget);
            await SnapshotReader.ReadAsync(c, datasources, stage, new HashSet<string>(), TimeSpan.FromSeconds(60), CancellationToken.None);
            stages.Add(stage);
        }
        return stages;
    }

    /// <summary>Snapshots per second stored on <paramref name="connections"/> connections for <paramref name="duration"/>.</summary>
    public static async Task<double> MeasureAsync(NpgsqlConnectionStringBuilder repo, IReadOnlyList<SnapshotStage> stages,
        int connections, TimeSpan duration)
    {
        var sw = Stopwatch.StartNew();
        var stored = 0;
        var workers = Enumerable.Range(0, connections).Select(async w =>
        {
            // Each connection stores its own servers, so that two never wait for one server's lock.
            var mine = stages.Where((_, i) => i % connections == w).ToList();
            if (mine.Count == 0) return;
            await using var c = new NpgsqlConnection(repo.ConnectionString);
            await c.OpenAsync();
            for (var i = 0; sw.Elapsed < duration; i++)
            {
                await SnapshotStore.StoreAsync(c, mine[i % mine.Count], CancellationToken.None);
                Interlocked.Increment(ref stored);
            }
        }).ToList();
        await Task.WhenAll(workers);
        return stored / sw.Elapsed.TotalSeconds;
    }
}
