using Akka.Actor;
using Akka.TestKit.Xunit2;
using Npgsql;
using PowaCluster.Collector.Actors;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Postgres;
using PowaCluster.Collector.Staging;
using PowaCluster.Tests.Support;
using Xunit;

namespace PowaCluster.Tests.Actors;

/// <summary>Each actor alone, its neighbours replaced by TestProbes, against the real PostgreSQL lab.</summary>
[Collection(LabCollection.Name)]
public sealed class ActorTests(LabFixture fx) : TestKit("akka.loglevel = INFO")
{
    static readonly PowaVersion Powa41 = new(4, 1, "4.1.4");
    static readonly PowaSql Sql41 = PowaSql.For(Powa41, "public");

    [Fact]
    public async Task FleetCoordinator_ensures_active_servers_and_stops_deactivated_ones()
    {
        var repo = await fx.NewRepositoryAsync();
        var a = await repo.RegisterAsync(fx.Lab.Remotes[0], 7, "a");
        var b = await repo.RegisterAsync(fx.Lab.Remotes[0], 8, "b");
        var region = CreateTestProbe();
        var settings = CollectorNode.FastSettings();
        var pool = Sys.ActorOf(SnapshotWriterPool.Props(settings, repo.ConnectionString, Sql41));
        Sys.ActorOf(FleetCoordinator.Props(settings, repo.ConnectionString, Sql41, region.Ref, pool));

        var first = new[] { region.ExpectMsg<EnsureCollecting>(), region.ExpectMsg<EnsureCollecting>() };
        Assert.Equal([a, b], first.Select(m => m.SrvId).Order());
        // The srvid and the row's version: no connection setting, no password crosses the network.
        Assert.All(first, m => Assert.False(string.IsNullOrEmpty(m.RowVersion)));
        var version = first.Single(m => m.SrvId == a).RowVersion;
        await repo.ExecAsync("UPDATE powa_servers SET password = 'changed' WHERE id = $1", a);

        await repo.ExecAsync("SELECT powa_deactivate_server($1)", b);
        region.FishForMessage(m => m is StopCollecting s && s.SrvId == b, TimeSpan.FromSeconds(5));
        // a stays alive, b is no longer ensured
        var later = region.ReceiveN(4, TimeSpan.FromSeconds(6)).OfType<EnsureCollecting>().ToList();
        Assert.All(later, m => Assert.Equal(a, m.SrvId));
        // The password change shows as a new row version, so that the entity reads its row again.
        Assert.NotEqual(version, later[^1].RowVersion);
    }

    /// <summary>Starts an entity as the coordinator does, and answers its read of its own row as the writers would.</summary>
    static void Start(IActorRef entity, Akka.TestKit.TestProbe writers, ServerConfig config)
    {
        entity.Tell(new EnsureCollecting(config.SrvId, "v1"));
        var read = writers.ExpectMsg<ReadServer>(TimeSpan.FromSeconds(5));
        Assert.Equal(config.SrvId, read.SrvId);
        writers.Reply(new ServerRead(config.SrvId, new ServerRow(config, "v1"), null));
    }

    static readonly RemoteVersions Versions = new("15.0", 150000, new Dictionary<string, string>(), null, new Dictionary<string, string>());

    static StageBudget Stages() => new(1 << 20, Path.Combine(Path.GetTempPath(), $"powa-cluster-test-stage-{Guid.NewGuid():N}"));

    [Fact]
    public async Task SnapshotWriterPool_runs_queued_work_in_order_on_a_bounded_pool()
    {
        var repo = await fx.NewRepositoryAsync();
        var ids = new List<int>();
        for (var i = 1; i <= 5; i++) ids.Add(await repo.RegisterAsync(fx.Lab.Remotes[0], 20 + i, $"q{i}"));
        var settings = CollectorNode.FastSettings();
        settings.WriterPoolSize = 1;
        var pool = Sys.ActorOf(SnapshotWriterPool.Props(settings, repo.ConnectionString, Sql41));
        foreach (var id in ids) pool.Tell(new RestoreSchedule(id, Versions, TestActor));
        var results = ids.Select(_ => ExpectMsg<ScheduleRestored>(TimeSpan.FromSeconds(10))).ToList();
        Assert.Equal(ids, results.Select(r => r.SrvId));
        Assert.All(results, r => Assert.Null(r.Error));
        Assert.All(results, r => Assert.True(r.Last!.Registered));
        Assert.All(results, r => Assert.Contains(r.Plan.Global, d => d.QuerySource == "powa_statements_src"));
        // One writer, one persistent connection for all five.
        Assert.Equal(1, await repo.CollectorConnectionsAsync());
        pool.Tell(GetWriterPoolStats.Instance);
        var stats = ExpectMsg<WriterPoolStats>();
        Assert.Equal(5, stats.Dispatched);
        Assert.Equal(0, stats.Queued);
    }

    [Fact]
    public void SnapshotWriterPool_reports_an_unreachable_repository_without_its_password()
    {
        var settings = CollectorNode.FastSettings();
        var csb = new NpgsqlConnectionStringBuilder { Host = "127.0.0.1", Port = 1, Database = "powa", Username = "u", Password = "Hush-Hush-42" };
        var pool = Sys.ActorOf(SnapshotWriterPool.Props(settings, csb, Sql41));
        pool.Tell(new RestoreSchedule(9, Versions, TestActor));
        var failed = ExpectMsg<ScheduleRestored>(TimeSpan.FromSeconds(10));
        Assert.Null(failed.Last);
        Assert.Contains("no connection to repository server 127.0.0.1:1/powa user=u", failed.Error);
        Assert.DoesNotContain("Hush-Hush-42", failed.Error);
    }

    [Fact]
    public void ServerCollector_restores_its_schedule_reads_a_whole_stage_then_asks_a_writer_and_reports_a_lost_repository()
    {
        var remote = fx.Lab.Remotes[1];
        var writers = CreateTestProbe();
        var settings = CollectorNode.FastSettings();
        var entity = Sys.ActorOf(ServerCollector.Props(settings, Powa41, writers.Ref, Stages()), "42");
        Start(entity, writers, new ServerConfig(42, remote.Host(9), remote.Port, "postgres", remote.Password, "powa", 5, "x"));

        var restore = writers.ExpectMsg<RestoreSchedule>(TimeSpan.FromSeconds(10));
        Assert.Equal(42, restore.SrvId);
        // Last snapshot 4 s ago at frequency 5 s: the next one is due in about 1 s, not at a random phase.
        writers.Reply(new ScheduleRestored(42, new LastSnapshot(true, DateTimeOffset.UtcNow.AddSeconds(-4)),
            new SnapshotPlan([new Datasource("pg_stat_statements", false, "powa_statements_src", null, "powa_statements_snapshot", "public"),
                              new Datasource("nothing", false, "powa_no_such_src", null, "none", "public")], []), null));
        var store = writers.ExpectMsg<StoreSnapshot>(TimeSpan.FromSeconds(3));
        using (store.Stage)
        {
            Assert.Equal(42, store.SrvId);
            Assert.Equal(entity, store.ReplyTo);
            // The whole read is in the stage before a writer is asked: rows of the one that exists, the other's error.
            var statements = Assert.Single(store.Stage!.Datasources);
            Assert.True(statements.HasRows);
            Assert.Contains(store.Stage.Errors, e => e.Contains("powa_no_such_src"));
        }
        writers.Reply(new SnapshotNotStored(42, store.Sequence, "no connection to repository server x", TimeSpan.Zero));
        AwaitAssert(() =>
        {
            entity.Tell(new GetServerStatus(42));
            var status = ExpectMsg<ServerStatus>();
            Assert.Equal(CollectorStatus.NoRepository, status.Status);
            Assert.Equal("no connection to repository server x", status.LastError);
        }, TimeSpan.FromSeconds(3));
    }

    [Fact]
    public void ServerCollector_keeps_reading_while_the_repository_is_slow_and_stores_its_snapshots_one_at_a_time_in_order()
    {
        var remote = fx.Lab.Remotes[1];
        var writers = CreateTestProbe();
        var settings = CollectorNode.FastSettings();
        settings.ResyncInterval = TimeSpan.FromMinutes(1); // no lease expiry during the test
        settings.MaxQueuedSnapshots = 3;
        var entity = Sys.ActorOf(ServerCollector.Props(settings, Powa41, writers.Ref, Stages()), "45");
        Start(entity, writers, new ServerConfig(45, remote.Host(10), remote.Port, "postgres", remote.Password, "powa", 1, "q"));
        writers.ExpectMsg<RestoreSchedule>(TimeSpan.FromSeconds(10));
        var plan = new SnapshotPlan([new Datasource("pg_stat_statements", false, "powa_statements_src", null, "powa_statements_snapshot", "public")], []);
        writers.Reply(new ScheduleRestored(45, new LastSnapshot(true, DateTimeOffset.UtcNow.AddSeconds(-0.8)), plan, null));

        // The repository does not answer the first store for 3.5 s: no second store is sent meanwhile (one at a
        // time per server), but the entity goes on reading at its due times (every second).
        var first = writers.ExpectMsg<StoreSnapshot>(TimeSpan.FromSeconds(3));
        writers.ExpectNoMsg(TimeSpan.FromSeconds(3.5));
        var stored = new List<StoreSnapshot> { first };
        writers.Send(entity, new SnapshotStored(45, first.Sequence, new StoreResult(StoreOutcome.Stored, plan, 0, []), TimeSpan.Zero, TimeSpan.Zero));
        // Then the queue comes, oldest first, each once the previous one is stored; at most 3 were unstored at
        // once (MaxQueuedSnapshots), so a tick was skipped and is caught up.
        for (var i = 0; i < 2; i++)
        {
            var next = writers.ExpectMsg<StoreSnapshot>(TimeSpan.FromSeconds(3));
            stored.Add(next);
            writers.Send(entity, new SnapshotStored(45, next.Sequence, new StoreResult(StoreOutcome.Stored, plan, 0, []), TimeSpan.Zero, TimeSpan.Zero));
        }
        try
        {
            Assert.Equal(stored.Select(s => s.Sequence).Order(), stored.Select(s => s.Sequence));
            Assert.Equal(stored.Select(s => s.Stage!.TakenAtUtc).Order(), stored.Select(s => s.Stage!.TakenAtUtc));
            // The queued ones were read while the first one waited, a second apart, not after it was stored.
            var released = first.Stage!.TakenAtUtc + TimeSpan.FromSeconds(3.5);
            Assert.True(stored[1].Stage!.TakenAtUtc < released - TimeSpan.FromSeconds(1.5), $"second read at {stored[1].Stage!.TakenAtUtc:O}");
            Assert.True(stored[2].Stage!.TakenAtUtc < released, $"third read at {stored[2].Stage!.TakenAtUtc:O}");
            Assert.InRange((stored[2].Stage!.TakenAtUtc - stored[1].Stage!.TakenAtUtc).TotalSeconds, 0.7, 1.3);
        }
        finally
        {
            foreach (var s in stored) s.Stage!.Dispose();
        }
        entity.Tell(new GetServerStatus(45));
        var status = ExpectMsg<ServerStatus>();
        Assert.Equal(CollectorStatus.Running, status.Status);
        Assert.Equal(3, status.Snapshots);
        Sys.Stop(entity);
    }

    [Fact]
    public void ServerCollector_on_an_unreachable_remote_reports_the_error_and_retries()
    {
        var writers = CreateTestProbe();
        var settings = CollectorNode.FastSettings();
        var entity = Sys.ActorOf(ServerCollector.Props(settings, Powa41, writers.Ref, Stages()), "43");
        Start(entity, writers, new ServerConfig(43, "127.0.0.1", 1, "postgres", "Hush-Hush-42", "powa", 5, null));

        var report = writers.ExpectMsg<ReportErrors>(TimeSpan.FromSeconds(10));
        Assert.Contains("cannot connect to 127.0.0.1:1/powa user=postgres", Assert.Single(report.Errors));
        entity.Tell(new GetServerStatus(43));
        var status = ExpectMsg<ServerStatus>();
        Assert.Equal(CollectorStatus.NoRemote, status.Status);
        Assert.Contains("cannot connect to 127.0.0.1:1/powa user=postgres", status.LastError);
        Assert.DoesNotContain("Hush-Hush-42", status.LastError);
        // Backoff, then another attempt.
        Assert.Equal(43, writers.ExpectMsg<ReportErrors>(TimeSpan.FromSeconds(5)).SrvId);
    }

    [Fact]
    public void ServerCollector_stops_on_StopCollecting()
    {
        var writers = CreateTestProbe();
        var entity = Sys.ActorOf(ServerCollector.Props(CollectorNode.FastSettings(), Powa41, writers.Ref, Stages()), "44");
        Watch(entity);
        Start(entity, writers, new ServerConfig(44, "127.0.0.1", 1, "postgres", null, "powa", 5, null));
        entity.Tell(new StopCollecting(44));
        ExpectTerminated(entity, TimeSpan.FromSeconds(5));
    }
}
