using Akka.Actor;
using Akka.Hosting;
using PowaCluster.Collector.Actors;
using PowaCluster.Lab.Embedded;
using PowaCluster.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace PowaCluster.Tests.Integration;

/// <summary>
/// The repository stopped (pg_ctl stop, then start) while servers are collected: the snapshots due meanwhile
/// are spooled on the node's disk and replayed after it, in order, with their own timestamps, so that the
/// history has no hole; pg_qualstats' quals read (and reset) during the outage are there too.
/// </summary>
[Collection(LabCollection.Name)]
public sealed class SpoolTests(LabFixture fx, ITestOutputHelper output)
{
    const int Frequency = 5;

    [Fact]
    public async Task Every_interval_of_a_repository_outage_is_in_the_history_after_it()
    {
        var instance = fx.Lab.Repository as LocalPostgres ?? throw new InvalidOperationException("the spool tests stop a local repository instance");
        var repo = await fx.NewRepositoryAsync();
        var ids = new List<int>();
        for (var i = 0; i < 10; i++) ids.Add(await repo.RegisterAsync(fx.Lab.Remotes[i % 2], 21 + i / 2, $"spool-{i}", frequency: Frequency));
        await using var workload = Workload.Start(fx.Lab);
        await using var node = await CollectorNode.StartAsync(repo);
        await Eventually.HoldsAsync(() => repo.AllSnapshottedAsync(ids), TimeSpan.FromSeconds(30), "a first snapshot of every server");

        var outage = TimeSpan.FromSeconds(Environment.GetEnvironmentVariable("POWA_SPOOL_TEST_OUTAGE") is { } o ? int.Parse(o) : 120);
        await instance.StopAsync();
        var stoppedAt = DateTime.UtcNow;
        await Task.Delay(outage / 2);
        var region = ActorRegistry.For(node.System).Get<ServerCollector>();
        foreach (var id in ids)
        {
            var st = await region.Ask<ServerStatus>(new GetServerStatus(id), TimeSpan.FromSeconds(3));
            Assert.Equal(CollectorStatus.NoRepository, st.Status);
            Assert.True(st.SpooledSnapshots >= 3, $"server {id}: {st.SpooledSnapshots} snapshots spooled half-way through the outage");
        }
        await Task.Delay(outage - (DateTime.UtcNow - stoppedAt));
        await instance.StartAgainAsync();
        var startedAt = DateTime.UtcNow;
        output.WriteLine($"repository stopped from {stoppedAt:HH:mm:ss.fff} to {startedAt:HH:mm:ss.fff} UTC");

        await Eventually.HoldsAsync(async () =>
        {
            foreach (var id in ids)
                if ((await region.Ask<ServerStatus>(new GetServerStatus(id), TimeSpan.FromSeconds(3))).SpooledSnapshots > 0) return false;
            return await repo.AllSnapshottedAsync(ids, startedAt.AddSeconds(Frequency));
        }, TimeSpan.FromSeconds(120), "every spooled snapshot replayed, then a live one");
        output.WriteLine($"drained {(DateTime.UtcNow - startedAt).TotalSeconds:F1} s after the restart");

        var expected = outage.TotalSeconds / Frequency;
        var qualsByRemote = new long[2];
        foreach (var (id, i) in ids.Select((id, i) => (id, i)))
        {
            var times = (await HistoryTimesAsync(repo, id)).Select(t => t.ToUniversalTime()).ToList();
            var during = times.Count(t => t > stoppedAt && t < startedAt);
            var gaps = times.Zip(times.Skip(1), (a, b) => (b - a).TotalSeconds).ToList();
            var quals = await repo.ScalarAsync<long>("SELECT count(DISTINCT ts) FROM powa_qualstats_quals_history_current WHERE srvid = $1 AND ts > $2 AND ts < $3",
                id, stoppedAt, startedAt);
            output.WriteLine($"server {id}: {during} snapshots of the outage (expected {expected:F0} ± 1), longest gap {gaps.Max():F1} s, " +
                             $"{quals} of them with quals");
            Assert.InRange(during, expected - 1, expected + 1);
            Assert.True(gaps.Max() < Frequency * 1.5, $"server {id}: a hole of {gaps.Max():F1} s in its history");
            Assert.True(gaps.Min() > Frequency / 2.0, $"server {id}: two snapshots {gaps.Min():F1} s apart");
            qualsByRemote[i % 2] += quals;
        }
        // Five servers share each remote's pg_qualstats, and each snapshot resets it: whichever of them comes
        // first after the workload gets the quals. Over the outage, each remote's quals are in the history.
        foreach (var q in qualsByRemote)
            Assert.True(q >= expected, $"pg_qualstats quals of a remote in {q} snapshots of the outage, {expected:F0} intervals");
        // powa-web's per-database sample of powa_statements_history over the outage (its graphs' query).
        var web = await repo.ListAsync<DateTime>(PowaWebSampleByDb, ids[0], stoppedAt, startedAt);
        output.WriteLine($"powa-web's sample query over the outage: {web.Count} rows, {web.Distinct().Count()} distinct ts");
        Assert.InRange(web.Distinct().Count(), expected - 1, expected + 1);
    }

    /// <summary>Every ts of a server's powa_stat_bgwriter history, aggregated or not.</summary>
    static Task<List<DateTime>> HistoryTimesAsync(TestRepository repo, int srvid) => repo.ListAsync<DateTime>(
        "SELECT ts FROM (SELECT (record).ts FROM powa_stat_bgwriter_history_current WHERE srvid = $1 " +
        "UNION SELECT (unnest(records)).ts FROM powa_stat_bgwriter_history WHERE srvid = $1) t ORDER BY 1", srvid);

    /// <summary>The shape of powa-web's BASE_QUERY_SAMPLE_DB (powa/sql/views_graph.py): the per-database statements history in a range.</summary>
    const string PowaWebSampleByDb =
        "SELECT base.ts FROM powa_databases d, LATERAL (" +
        "  SELECT dbid, (unnested.records).ts FROM (SELECT psh.dbid, unnest(records) AS records FROM powa_statements_history_db psh " +
        "    WHERE coalesce_range && tstzrange($2, $3, '[]') AND psh.dbid = d.oid AND psh.srvid = d.srvid AND psh.srvid = $1) unnested " +
        "  WHERE (records).ts <@ tstzrange($2, $3, '[]') " +
        "  UNION ALL SELECT dbid, (record).ts FROM powa_statements_history_current_db " +
        "  WHERE (record).ts <@ tstzrange($2, $3, '[]') AND dbid = d.oid AND srvid = d.srvid AND srvid = $1) base " +
        "WHERE d.srvid = $1";

    /// <summary>Activity on every remote, every 200 ms: statements with quals between two snapshots.</summary>
    sealed class Workload : IAsyncDisposable
    {
        readonly CancellationTokenSource _stop = new();
        Task _loop = Task.CompletedTask;

        public static Workload Start(PowaLab lab)
        {
            var w = new Workload();
            w._loop = Task.Run(async () =>
            {
                while (!w._stop.IsCancellationRequested)
                {
                    foreach (var r in lab.Remotes)
                        try { await PowaLab.WorkAsync(r); } catch (Npgsql.NpgsqlException) { /* a remote restarted by a test */ }
                    await Task.Delay(200, w._stop.Token).ContinueWith(_ => { });
                }
            });
            return w;
        }

        public async ValueTask DisposeAsync()
        {
            _stop.Cancel();
            await _loop;
        }
    }
}
