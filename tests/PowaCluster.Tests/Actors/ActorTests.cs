using Akka.Actor;
using Akka.TestKit.Xunit2;
using Npgsql;
using PowaCluster.Collector.Actors;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Postgres;
using PowaCluster.Tests.Support;
using Xunit;

namespace PowaCluster.Tests.Actors;

/// <summary>Each actor alone, its neighbours replaced by TestProbes, against the real PostgreSQL lab.</summary>
[Collection(LabCollection.Name)]
public sealed class ActorTests(LabFixture fx) : TestKit("akka.loglevel = INFO")
{
    static readonly PowaVersion Powa41 = new(4, 1, "4.1.4");

    [Fact]
    public async Task FleetCoordinator_ensures_active_servers_and_stops_deactivated_ones()
    {
        var repo = await fx.NewRepositoryAsync();
        var a = await repo.RegisterAsync(fx.Lab.Remotes[0], 7, "a");
        var b = await repo.RegisterAsync(fx.Lab.Remotes[0], 8, "b");
        var region = CreateTestProbe();
        var settings = CollectorNode.FastSettings();
        Sys.ActorOf(FleetCoordinator.Props(settings, repo.ConnectionString, region.Ref));

        var first = new[] { region.ExpectMsg<EnsureCollecting>(), region.ExpectMsg<EnsureCollecting>() };
        Assert.Equal([a, b], first.Select(m => m.SrvId).Order());
        Assert.Equal("127.0.0.7", first.Single(m => m.SrvId == a).Config.Hostname);

        await repo.ExecAsync("SELECT powa_deactivate_server($1)", b);
        region.FishForMessage(m => m is StopCollecting s && s.SrvId == b, TimeSpan.FromSeconds(5));
        // a stays alive, b is no longer ensured
        var later = region.ReceiveN(4, TimeSpan.FromSeconds(6)).OfType<EnsureCollecting>().ToList();
        Assert.All(later, m => Assert.Equal(a, m.SrvId));
    }

    [Fact]
    public async Task SnapshotWriterPool_runs_queued_work_in_order_on_a_bounded_pool()
    {
        var repo = await fx.NewRepositoryAsync();
        var settings = CollectorNode.FastSettings();
        settings.WriterPoolSize = 1;
        var pool = Sys.ActorOf(SnapshotWriterPool.Props(settings, repo.ConnectionString));
        for (var i = 1; i <= 5; i++)
        {
            var n = i;
            pool.Tell(new RunRepositoryJob(0, $"job{n}", async (c, ct) =>
            {
                await using var cmd = new NpgsqlCommand("SELECT $1::int, pg_backend_pid()", c) { Parameters = { new() { Value = n } } };
                await using var r = await cmd.ExecuteReaderAsync(ct);
                await r.ReadAsync(ct);
                return (r.GetInt32(0), r.GetInt32(1));
            }, TestActor));
        }
        var results = Enumerable.Range(1, 5).Select(_ => ExpectMsg<RepositoryJobResult>()).ToList();
        Assert.Equal(["job1", "job2", "job3", "job4", "job5"], results.Select(r => r.What));
        Assert.All(results, r => Assert.Null(r.Error));
        // One writer, one persistent connection for all five jobs.
        Assert.Single(results.Select(r => (((int, int))r.Result!).Item2).Distinct());
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
        var pool = Sys.ActorOf(SnapshotWriterPool.Props(settings, csb));
        pool.Tell(new RequestSnapshotSession(9, "127.0.0.1:5432", TestActor));
        var failed = ExpectMsg<SessionFailed>(TimeSpan.FromSeconds(10));
        Assert.Contains("no connection to repository server 127.0.0.1:1/powa user=u", failed.Error);
        Assert.DoesNotContain("Hush-Hush-42", failed.Error);
    }

    [Fact]
    public void ServerCollector_restores_its_schedule_then_asks_for_a_writer_and_reports_a_lost_repository()
    {
        var remote = fx.Lab.Remotes[1];
        var writers = CreateTestProbe();
        var settings = CollectorNode.FastSettings();
        var entity = Sys.ActorOf(ServerCollector.Props(settings, Powa41, writers.Ref), "42");
        entity.Tell(new EnsureCollecting(new ServerConfig(42, remote.Host(9), remote.Port, "postgres", remote.Password, "powa", 5, "x")));

        var restore = writers.ExpectMsg<RunRepositoryJob>(TimeSpan.FromSeconds(10));
        Assert.Equal("restore", restore.What);
        // Last snapshot 4 s ago at frequency 5 s: the next one is due in about 1 s, not at a random phase.
        writers.Reply(new RepositoryJobResult(42, "restore", new LastSnapshot(true, DateTimeOffset.UtcNow.AddSeconds(-4)), null));
        var request = writers.ExpectMsg<RequestSnapshotSession>(TimeSpan.FromSeconds(3));
        Assert.Equal(42, request.SrvId);
        Assert.Equal(entity, request.Requester);

        writers.Reply(new SessionFailed(42, "no connection to repository server x"));
        AwaitAssert(() =>
        {
            entity.Tell(new GetServerStatus(42));
            var status = ExpectMsg<ServerStatus>();
            Assert.Equal(CollectorStatus.NoRepository, status.Status);
            Assert.Equal("no connection to repository server x", status.LastError);
        }, TimeSpan.FromSeconds(3));
    }

    [Fact]
    public void ServerCollector_on_an_unreachable_remote_reports_the_error_and_retries()
    {
        var writers = CreateTestProbe();
        var settings = CollectorNode.FastSettings();
        var entity = Sys.ActorOf(ServerCollector.Props(settings, Powa41, writers.Ref), "43");
        entity.Tell(new EnsureCollecting(new ServerConfig(43, "127.0.0.1", 1, "postgres", "Hush-Hush-42", "powa", 5, null)));

        var report = writers.ExpectMsg<RunRepositoryJob>(TimeSpan.FromSeconds(10));
        Assert.Equal("report-error", report.What);
        entity.Tell(new GetServerStatus(43));
        var status = ExpectMsg<ServerStatus>();
        Assert.Equal(CollectorStatus.NoRemote, status.Status);
        Assert.Contains("cannot connect to 127.0.0.1:1/powa user=postgres", status.LastError);
        Assert.DoesNotContain("Hush-Hush-42", status.LastError);
        // Backoff, then another attempt.
        Assert.Equal("report-error", writers.ExpectMsg<RunRepositoryJob>(TimeSpan.FromSeconds(5)).What);
    }

    [Fact]
    public void ServerCollector_stops_on_StopCollecting()
    {
        var writers = CreateTestProbe();
        var entity = Sys.ActorOf(ServerCollector.Props(CollectorNode.FastSettings(), Powa41, writers.Ref), "44");
        Watch(entity);
        entity.Tell(new EnsureCollecting(new ServerConfig(44, "127.0.0.1", 1, "postgres", null, "powa", 5, null)));
        entity.Tell(new StopCollecting(44));
        ExpectTerminated(entity, TimeSpan.FromSeconds(5));
    }
}
