using System.Diagnostics;
using Npgsql;
using PowaCluster.Host.Startup;
using PowaCluster.Lab.Demo;
using PowaCluster.Lab.Embedded;

namespace PowaCluster.Lab.Bench;

/// <summary>The runs' shared set-up: the lab, the servers, and a workload on the remotes.</summary>
sealed class BenchRuns(PowaLab lab, NpgsqlConnection repo, LabOptions o, CancellationToken stop)
    : IAsyncDisposable
{
    readonly List<int> _servers = [];
    readonly List<(IPostgresInstance Remote, int Address)> _where = [];
    readonly List<IPostgresInstance> _extra = [];   // remote instances beyond the lab's, for large loads
    readonly HashSet<IPostgresInstance> _frozen = [];
    const int PerInstance = LocalPostgres.MaxLoopbackAddresses;

    public IReadOnlyList<int> AllServers => _servers;
    IEnumerable<IPostgresInstance> Remotes => lab.Remotes.Concat(_extra);

    /// <summary>At least n servers registered, placed by <see cref="PlaceAsync"/>.</summary>
    public async Task EnsureServersAsync(int n)
    {
        while (_servers.Count < n)
        {
            var i = _servers.Count;
            var (remote, address) = await PlaceAsync(i);
            _servers.Add(await lab.RegisterAsync(remote.Host(address), remote.Port, $"bench-{i + 1}", o.Frequency, remote.Password));
            _where.Add((remote, address));
        }
    }

    /// <summary>
    /// Where the i-th server is: alternately on the lab's remotes (the comparison's servers are shared evenly),
    /// one loopback address after the other, then on extra instances of 60 servers each (one per address).
    /// </summary>
    async Task<(IPostgresInstance Remote, int Address)> PlaceAsync(int i)
    {
        var inLab = lab.Remotes.Count * PerInstance;
        if (i < inLab) return (lab.Remotes[i % lab.Remotes.Count], i / lab.Remotes.Count + 1);
        var k = (i - inLab) / PerInstance;
        if (k >= _extra.Count)
        {
            BenchCommand.Say($"starting another remote instance for servers {i + 1} to {i + PerInstance}");
            var pg = await LocalPostgres.StartAsync($"remote{lab.Remotes.Count + k + 1}", PerInstance);
            _extra.Add(pg);
            await PowaLab.InstallPowaAsync(pg, withStatsExtensions: true);
            await PowaLab.MakeWorkloadAsync(pg);
            await PowaLab.MakeStatementsAsync(pg, 300);
        }
        return (_extra[k], (i - inLab) % PerInstance + 1);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var pg in _extra) await pg.DisposeAsync();
    }

    /// <summary>Every 200 ms a round of statements on each remote that is not frozen, so that every datasource has rows.</summary>
    public IDisposable StartWorkload()
    {
        var cts = CancellationTokenSource.CreateLinkedTokenSource(stop);
        _ = Task.Run(async () =>
        {
            var conns = new Dictionary<IPostgresInstance, NpgsqlConnection>();
            while (!cts.IsCancellationRequested)
            {
                foreach (var r in Remotes.ToList())
                {
                    lock (_frozen) if (_frozen.Contains(r)) continue;
                    try
                    {
                        if (!conns.TryGetValue(r, out var c))
                        {
                            c = new NpgsqlConnection(r.ConnectionString(PowaLab.Database).ConnectionString);
                            await c.OpenAsync(cts.Token);
                            conns[r] = c;
                        }
                        await PowaLab.WorkAsync(c);
                    }
                    catch (Exception) { if (conns.Remove(r, out var dead)) await dead.DisposeAsync(); }
                }
                await Task.Delay(200, cts.Token).ContinueWith(_ => { });
            }
            foreach (var c in conns.Values) await c.DisposeAsync();
        });
        return cts;
    }

    /// <summary>
    /// n servers of their own for the repository's limit, on the addresses after the fleet's: those measures store
    /// each server's snapshots a minute apart, back to back, so its history ends in the future, where a
    /// collector's snapshots would be refused as going back in time. Dropped after the measures
    /// (DropLimitServersAsync), so that the fleet can grow onto their addresses.
    /// </summary>
    public async Task<IReadOnlyList<(int, NpgsqlConnectionStringBuilder)>> LimitServersAsync(int n)
    {
        var list = new List<(int, NpgsqlConnectionStringBuilder)>();
        for (var i = 0; i < n; i++)
        {
            var (remote, address) = await PlaceAsync(_servers.Count + i);
            var id = await lab.RegisterAsync(remote.Host(address), remote.Port, $"bench-limit-{i + 1}", o.Frequency, remote.Password);
            list.Add((id, remote.ConnectionString(PowaLab.Database, address)));
        }
        return list;
    }

    /// <summary>The first n servers of the fleet, and where each one is: for the limit measured on a fleet's own servers.</summary>
    public IReadOnlyList<(int, NpgsqlConnectionStringBuilder)> Fleet(int n) =>
        _servers.Take(n).Select((id, i) => (id, _where[i].Remote.ConnectionString(PowaLab.Database, _where[i].Address))).ToList();

    /// <summary>The limit's servers and their history gone (powa_delete_and_purge_server).</summary>
    public async Task DropLimitServersAsync(IEnumerable<int> srvids)
    {
        foreach (var id in srvids)
        {
            await using var cmd = new NpgsqlCommand("SELECT powa_delete_and_purge_server($1)", repo) { Parameters = { new() { Value = id } } };
            await cmd.ExecuteNonQueryAsync();
        }
    }

    /// <summary>The first n registered servers active at the frequency, the others deactivated (frequency -1).</summary>
    async Task ActivateAsync(int n, int frequency)
    {
        await using var cmd = new NpgsqlCommand(
            "UPDATE powa_servers SET frequency = CASE WHEN id = ANY($1) THEN $2 ELSE -1 END WHERE id > 0", repo)
        { Parameters = { new() { Value = AllServers.Take(n).ToArray() }, new() { Value = frequency } } };
        await cmd.ExecuteNonQueryAsync();
    }

    public Task<BenchRow> RunAsync(Func<Task<IDemoCollector>> start, int servers, int frequency) =>
        RunAsync(start, servers, frequency, TimeSpan.FromSeconds(o.Warmup), TimeSpan.FromSeconds(o.Seconds ?? 60));

    public async Task<BenchRow> RunAsync(Func<Task<IDemoCollector>> start, int servers, int frequency, TimeSpan warmup, TimeSpan window)
    {
        var row = await MeasureAsync(start, servers, frequency, warmup, window);
        BenchCommand.Say($"{row.Collector}: {row.Snapshots} snapshots ({row.Due} due), interval error p50 {row.ErrP50 * 100:F1} % p99 {row.ErrP99 * 100:F1} %, " +
            (row.Snapshots > 0 ? $"CPU {row.CpuMsPerSnapshot:F2} ms per snapshot ({row.KernelMsPerSnapshot:F2} in the kernel; " : "CPU (") +
            $"{row.CpuPercent:F2} % of a core), {row.RssBytes / 1048576.0:F0} MB resident, " +
            $"{row.Threads} threads, {row.RepoConnections} repository connections");
        return row;
    }

    /// <summary>
    /// Every measure (the limit's too) starts on the same repository: the current history the rows before it
    /// stored emptied (TRUNCATE of the powa_*_history_current tables but powa_stat_bgwriter's, which
    /// SnapshotLog counts), then a VACUUM of the database. Otherwise a row pays for what the rows before it left:
    /// each snapshot adds its statements to history tables larger than shared_buffers, and rewrites
    /// powa_statements' last_present_ts, which the bench's throwaway repository, with autovacuum's defaults,
    /// charges to whichever row comes later.
    /// </summary>
    public static async Task ResetAsync(NpgsqlConnection repo)
    {
        var sw = Stopwatch.StartNew();
        await using var cmd = new NpgsqlCommand("""
            DO $$
            DECLARE t regclass;
            BEGIN
              FOR t IN SELECT c.oid::regclass FROM pg_class c
                       WHERE c.relname LIKE 'powa\_%\_history\_current%' AND c.relname NOT LIKE 'powa\_stat\_bgwriter%'
                         AND c.relkind IN ('r', 'p') LOOP
                EXECUTE format('TRUNCATE %s', t);
              END LOOP;
            END $$
            """, repo) { CommandTimeout = 600 };
        await cmd.ExecuteNonQueryAsync();
        // A statement of its own: VACUUM cannot run in a batch's implicit transaction.
        await using var vacuum = new NpgsqlCommand("VACUUM", repo) { CommandTimeout = 600 };
        await vacuum.ExecuteNonQueryAsync();
        if (sw.Elapsed > TimeSpan.FromSeconds(1)) BenchCommand.Say($"repository reset in {sw.Elapsed.TotalSeconds:F1} s");
    }

    async Task<BenchRow> MeasureAsync(Func<Task<IDemoCollector>> start, int servers, int frequency, TimeSpan warmup, TimeSpan window)
    {
        if (servers > 0) await EnsureServersAsync(servers);
        if (AllServers.Count > 0) await ActivateAsync(servers, frequency);
        await ResetAsync(repo);
        await using var collector = await start();
        BenchCommand.Say($"{collector.Name}: {servers} servers at {frequency} s, {warmup.TotalSeconds:F0} s of warm-up then {window.TotalSeconds:F0} s measured");
        await WaitAsync(warmup, collector);
        var from = await SnapshotLog.NowAsync(repo);
        var stored0 = await SnapshotLog.StoredAsync(repo);
        var cpu0 = ProcessProbe.Cpu(collector.Pid);
        var sw = Stopwatch.StartNew();
        long rss = 0;
        int threads = 0, conns = 0;
        while (sw.Elapsed < window)
        {
            var (r, t) = ProcessProbe.Memory(collector.Pid);
            rss = Math.Max(rss, r);
            threads = Math.Max(threads, t);
            conns = Math.Max(conns, await SnapshotLog.CollectorConnectionsAsync(repo));
            await WaitAsync(TimeSpan.FromMilliseconds(500), collector);
        }
        var cpu1 = ProcessProbe.Cpu(collector.Pid);
        var (cpu, kernel) = (cpu1.Total - cpu0.Total, cpu1.Kernel - cpu0.Kernel);
        var seconds = sw.Elapsed.TotalSeconds;
        var to = from + sw.Elapsed;
        // Stored within the window, not taken within it (SnapshotLog.StoredAsync).
        var snapshots = (int)(await SnapshotLog.StoredAsync(repo) - stored0);
        await collector.StopAsync();
        var times = await SnapshotLog.TimesAsync(repo, from, to);
        var errors = SnapshotLog.IntervalErrors(times, TimeSpan.FromSeconds(frequency));
        return new BenchRow(collector.Name, servers, frequency, snapshots, (int)(servers * seconds / frequency),
            SnapshotLog.Percentile(errors, 0.5), SnapshotLog.Percentile(errors, 0.99),
            snapshots == 0 ? 0 : cpu.TotalMilliseconds / snapshots, cpu.TotalSeconds / seconds * 100, rss, threads, conns, seconds,
            snapshots == 0 ? 0 : kernel.TotalMilliseconds / snapshots);
    }

    /// <summary>One remote frozen (SIGSTOP) for a while: how many snapshots the other remote's servers got, against their schedule.</summary>
    public async Task<string> FrozenRemoteAsync(Func<Task<IDemoCollector>> start, LocalPostgres victim, TimeSpan frozenFor)
    {
        await ActivateAsync(o.Servers, o.Frequency);
        await ResetAsync(repo);
        var healthy = AllServers.Take(o.Servers).Where((_, i) => _where[i].Remote != victim).ToList();
        await using var collector = await start();
        BenchCommand.Say($"{collector.Name}: {o.Servers} servers at {o.Frequency} s; {victim.Name} frozen for {frozenFor.TotalSeconds:F0} s after {o.Warmup} s");
        await WaitAsync(TimeSpan.FromSeconds(o.Warmup), collector);
        var from = await SnapshotLog.NowAsync(repo);
        lock (_frozen) _frozen.Add(victim);
        victim.Freeze();
        try { await WaitAsync(frozenFor, collector); }
        finally
        {
            victim.Thaw();
            lock (_frozen) _frozen.Remove(victim);
        }
        var to = from + frozenFor;
        var thawed = await SnapshotLog.NowAsync(repo);
        await WaitAsync(TimeSpan.FromSeconds(Math.Max(15, o.Frequency * 3)), collector);
        await collector.StopAsync();
        var times = await SnapshotLog.TimesAsync(repo, from, to);
        var got = healthy.Sum(id => times.TryGetValue(id, out var t) ? t.Count : 0);
        var due = (int)(healthy.Count * frozenFor.TotalSeconds / o.Frequency);
        var after = await SnapshotLog.TimesAsync(repo, thawed, LabClock.Utc.AddHours(1));
        var back = AllServers.Take(o.Servers).Except(healthy).Count(id => after.ContainsKey(id));
        return $"frozen remote: {victim.Name} stopped (SIGSTOP of its postmaster and backends) for {frozenFor.TotalSeconds:F0} s: " +
               $"the {healthy.Count} servers of the other remote got {got} snapshots of {due} due ({got * 100.0 / Math.Max(1, due):F1} %); " +
               $"{back} of the {o.Servers - healthy.Count} servers of the frozen one snapshotted again within {Math.Max(15, o.Frequency * 3)} s of the thaw";
    }

    async Task WaitAsync(TimeSpan t, IDemoCollector collector)
    {
        await Task.Delay(t, stop).ContinueWith(_ => { });
        stop.ThrowIfCancellationRequested();
        if (collector.ExitCode is { } code) throw new StartupException($"{collector.Name} exited with code {code}");
    }
}
