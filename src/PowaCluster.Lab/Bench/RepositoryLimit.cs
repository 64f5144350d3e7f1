using System.Diagnostics;
using Npgsql;
using PowaCluster.Host.Startup;
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
    /// <summary>
    /// A remote connection as the collector opens one (RemoteQueries.ConnectAsync: the srvid that the COPYs
    /// read, powa checked, the versions read), and what a snapshot of the server reads on it.
    /// </summary>
    static async Task<(NpgsqlConnection Conn, SnapshotJob Job)> OpenRemoteAsync(PowaSql sql, NpgsqlConnection repo, int srvid,
        NpgsqlConnectionStringBuilder dsn)
    {
        var (conn, v) = await RemoteQueries.ConnectAsync(dsn, srvid, sql.Version, TimeSpan.FromSeconds(30), TimeSpan.FromMinutes(5));
        var plan = await SnapshotStore.GetPlanAsync(sql, repo, srvid, v.ServerVersionNum, CancellationToken.None);
        var server = new Collector.Configuration.ServerConfig(srvid, dsn.Host!, dsn.Port, dsn.Username!, dsn.Password, dsn.Database!, 5, null);
        return (conn, new SnapshotJob(plan, v.Schemas, new HashSet<string>(), null, server, TimeSpan.FromSeconds(60), TimeSpan.FromSeconds(10)));
    }

    public static async Task<List<SnapshotStage>> ReadStagesAsync(NpgsqlConnectionStringBuilder repo,
        IReadOnlyList<(int SrvId, NpgsqlConnectionStringBuilder Remote)> servers)
    {
        var budget = new StageBudget(long.MaxValue, null);
        var stages = new List<SnapshotStage>();
        await using var r = new NpgsqlConnection(repo.ConnectionString);
        await r.OpenAsync();
        var sql = await PowaOfAsync(r);
        foreach (var (srvid, remote) in servers)
        {
            var (c, job) = await OpenRemoteAsync(sql, r, srvid, remote);
            await using var _ = c;
            var stage = new SnapshotStage(srvid, remote.Host!, budget);
            await SnapshotReader.ReadAsync(c, job, stage, CancellationToken.None);
            stages.Add(stage);
        }
        return stages;
    }

    /// <summary>The repository's SQL, for the powa found there.</summary>
    static Task<PowaSql> PowaOfAsync(NpgsqlConnection repo) =>
        RepositoryCheck.PowaOfAsync(repo, new NpgsqlConnectionStringBuilder(repo.ConnectionString), CancellationToken.None);

    /// <summary>
    /// Snapshots per second when each is read off its remote and then stored, back to back, on
    /// <paramref name="connections"/> workers: the floor of the whole path on this machine, without the
    /// collector's actors, schedule or queue.
    /// </summary>
    /// <param name="notBeforeUtc">the last time the limit's measure stored for these servers: the snapshots here
    /// are stored as taken a minute after it and after each other, or they would be refused as going back in time</param>
    public static async Task<double> MeasureWithReadsAsync(NpgsqlConnectionStringBuilder repo,
        IReadOnlyList<(int SrvId, NpgsqlConnectionStringBuilder Remote)> servers, int connections, TimeSpan duration,
        DateTime notBeforeUtc)
    {
        var budget = new StageBudget(long.MaxValue, null);
        await ResetRepositoryAsync(repo);
        var sw = Stopwatch.StartNew();
        var stored = 0;
        var workers = Enumerable.Range(0, connections).Select(async w =>
        {
            var mine = servers.Where((_, i) => i % connections == w).ToList();
            if (mine.Count == 0) return;
            await using var r = new NpgsqlConnection(repo.ConnectionString);
            await r.OpenAsync();
            var sql = await PowaOfAsync(r);
            var remotes = new List<(int SrvId, string Name, NpgsqlConnection Conn, SnapshotJob Job)>();
            var taken = new Dictionary<int, DateTime>();
            foreach (var (srvid, dsn) in mine)
            {
                var (c, job) = await OpenRemoteAsync(sql, r, srvid, dsn);
                remotes.Add((srvid, dsn.Host!, c, job));
                taken[srvid] = notBeforeUtc;
            }
            for (var i = 0; sw.Elapsed < duration; i++)
            {
                var (srvid, name, conn, job) = remotes[i % remotes.Count];
                using var stage = new SnapshotStage(srvid, name, budget);
                await SnapshotReader.ReadAsync(conn, job, stage, CancellationToken.None);
                // Read again within half an interval, a server's snapshot would be fenced: a minute after its last.
                stage.TakenAtUtc = taken[srvid] = taken.TryGetValue(srvid, out var last) && last >= stage.TakenAtUtc
                    ? last.AddMinutes(1) : stage.TakenAtUtc;
                var result = await SnapshotStore.StoreAsync(sql, r, stage, CancellationToken.None);
                if (result.Outcome != StoreOutcome.Stored)
                    throw new InvalidOperationException($"the read-and-store measure's store of server {srvid} was {result.Outcome}: {result.SkipReason}");
                Interlocked.Increment(ref stored);
            }
            foreach (var x in remotes) await x.Conn.DisposeAsync();
        }).ToList();
        await Task.WhenAll(workers);
        return stored / sw.Elapsed.TotalSeconds;
    }

    /// <summary>Snapshots per second stored on <paramref name="connections"/> connections for <paramref name="duration"/>.</summary>
    /// <param name="frequency">null: each store of a stage is taken a minute after its last (servers of the
    /// limit's own, purged afterwards); given: at the frequency or now, whichever is later, as a collector would
    /// take them (a fleet's own servers, whose history must not end in the future)</param>
    /// <param name="warmup">stores before <paramref name="duration"/> that are not counted: a collector row counts
    /// its window after its warm-up, on a repository that has grown since the reset, and so does this</param>
    public static async Task<double> MeasureAsync(NpgsqlConnectionStringBuilder repo, IReadOnlyList<SnapshotStage> stages,
        int connections, TimeSpan duration, TimeSpan? frequency = null, TimeSpan warmup = default)
    {
        await ResetRepositoryAsync(repo);
        var sw = Stopwatch.StartNew();
        var stored = 0;
        using var upkeep = new CancellationTokenSource();
        var vacuums = VacuumStagingWhileAsync(repo, upkeep.Token);
        var workers = Enumerable.Range(0, connections).Select(async w =>
        {
            // Each connection stores its own servers, so that two never wait for one server's lock.
            var mine = stages.Where((_, i) => i % connections == w).ToList();
            if (mine.Count == 0) return;
            await using var c = new NpgsqlConnection(repo.ConnectionString);
            await c.OpenAsync();
            var sql = await PowaOfAsync(c);
            for (var i = 0; sw.Elapsed < warmup + duration; i++)
            {
                // Each store of a stage as a snapshot taken later than its last one: the same time again would be
                // fenced (skipped in a few milliseconds), which is not a store.
                var stage = mine[i % mine.Count];
                stage.TakenAtUtc = frequency is { } f
                    ? new[] { stage.TakenAtUtc + f, LabClock.Utc }.Max()
                    : stage.TakenAtUtc.AddMinutes(1);
                var result = await SnapshotStore.StoreAsync(sql, c, stage, CancellationToken.None);
                if (result.Outcome != StoreOutcome.Stored)
                    throw new InvalidOperationException($"the repository limit's store of server {stage.SrvId} was {result.Outcome}: {result.SkipReason}");
                if (sw.Elapsed >= warmup) Interlocked.Increment(ref stored);
            }
        }).ToList();
        await Task.WhenAll(workers);
        var rate = stored / (sw.Elapsed - warmup).TotalSeconds;
        await upkeep.CancelAsync();
        await vacuums;
        return rate;
    }

    /// <summary>
    /// The staging tables vacuumed at the collector's default interval (StagingVacuumInterval) while a measure
    /// stores, as a node's writers keep them: a measure longer than that would otherwise pay for bloat the
    /// collector does not have.
    /// </summary>
    static async Task VacuumStagingWhileAsync(NpgsqlConnectionStringBuilder repo, CancellationToken ct)
    {
        var every = new Collector.Configuration.CollectorSettings().StagingVacuumInterval;
        await using var c = new NpgsqlConnection(repo.ConnectionString);
        await c.OpenAsync(CancellationToken.None);
        while (!ct.IsCancellationRequested)
        {
            await Task.Delay(every, ct).ContinueWith(_ => { }, CancellationToken.None);
            if (!ct.IsCancellationRequested) await RepositoryQueries.VacuumStagingAsync(c, CancellationToken.None);
        }
    }

    /// <summary>Each measure starts on the same repository as every collector run does (<see cref="BenchRuns.ResetAsync"/>).</summary>
    static async Task ResetRepositoryAsync(NpgsqlConnectionStringBuilder repo)
    {
        await using var c = new NpgsqlConnection(repo.ConnectionString);
        await c.OpenAsync();
        await BenchRuns.ResetAsync(c);
    }
}
