using System.Collections.Immutable;
using Akka.Actor;
using Akka.Cluster.Sharding;
using Akka.TestKit.Xunit2;
using PowaCluster.Collector.Actors;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Postgres;
using PowaCluster.Tests.Support;
using Xunit;

namespace PowaCluster.Tests.Actors;

/// <summary>
/// What a cold start of a large fleet relies on, each actor alone: the FleetCoordinator's first allocation
/// waits for the nodes expected (its shard region replaced by a probe that answers sharding's statistics), and
/// the ConnectRamp paces connections (servers replaced by probes).
/// </summary>
[Collection(LabCollection.Name)]
public sealed class ScaleActorTests(LabFixture fx) : TestKit("akka.loglevel = DEBUG")
{
    static readonly PowaSql Sql41 = PowaSql.For(new PowaVersion(4, 1, "4.1.4"), "public");

    static ClusterShardingStats Stats(int regions, int shards) => new(Enumerable.Range(1, regions).ToImmutableDictionary(
        i => new Address("akka.tcp", "powa-cluster", "127.0.0.1", 4000 + i),
        i => new ShardRegionStats(Enumerable.Range(0, i == 1 ? shards : 0).ToImmutableDictionary(s => s.ToString(), _ => 1),
            ImmutableHashSet<string>.Empty)));

    async Task<(TestRepository Repo, List<int> Ids)> ThreeServersAsync()
    {
        var repo = await fx.NewRepositoryAsync();
        var ids = new List<int>();
        for (var i = 0; i < 3; i++) ids.Add(await repo.RegisterAsync(fx.Lab.Remotes[0], 40 + i, $"scale-{i}"));
        return (repo, ids);
    }

    CollectorSettings Expecting(int nodes, TimeSpan wait)
    {
        var s = CollectorNode.FastSettings();
        s.Seeds = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"];
        s.ExpectedNodes = nodes;
        s.ExpectedNodesWait = wait;
        return s;
    }

    static readonly CurrentShardRegionState NoShardHere = new(ImmutableHashSet<ShardState>.Empty, ImmutableHashSet<string>.Empty);

    /// <summary>The coordinator asks its node's region, which holds no shard, then the cluster: regions and shards.</summary>
    static void Answer(Akka.TestKit.TestProbe region, int regions, int shards)
    {
        region.ExpectMsg<GetShardRegionState>(TimeSpan.FromSeconds(5));
        region.Reply(NoShardHere);
        region.ExpectMsg<GetClusterShardingStats>(TimeSpan.FromSeconds(5));
        region.Reply(Stats(regions, shards));
    }

    /// <summary>A FleetCoordinator with a writer pool of its own; its shard region is the probe returned.</summary>
    Akka.TestKit.TestProbe StartCoordinator(TestRepository repo, CollectorSettings settings)
    {
        var region = CreateTestProbe();
        var pool = Sys.ActorOf(SnapshotWriterPool.Props(settings, repo.ConnectionString, Sql41));
        Sys.ActorOf(FleetCoordinator.Props(settings, repo.ConnectionString, Sql41, region.Ref, pool));
        return region;
    }

    [Fact]
    public async Task A_new_cluster_allocates_its_servers_once_the_expected_nodes_are_members()
    {
        var (repo, ids) = await ThreeServersAsync();
        var settings = Expecting(3, TimeSpan.FromMinutes(5));
        var region = StartCoordinator(repo, settings);

        // Two regions of three, nothing allocated: powa_servers is read (resyncs go on), no server is ensured.
        for (var round = 0; round < 3; round++) Answer(region, 2, 0);
        region.ExpectNoMsg(TimeSpan.FromMilliseconds(500));
        // The third node's region registers: every server is ensured.
        Answer(region, 3, 0);
        var ensured = region.ReceiveN(3, TimeSpan.FromSeconds(5)).Cast<EnsureCollecting>().Select(e => e.SrvId).Order().ToList();
        Assert.Equal(ids, ensured);
    }

    [Fact]
    public async Task The_first_allocation_waits_ExpectedNodesWait_at_most_and_a_running_cluster_does_not_wait()
    {
        var (repo, ids) = await ThreeServersAsync();
        var settings = Expecting(3, TimeSpan.FromSeconds(3));
        var region = StartCoordinator(repo, settings);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var ensured = new List<int>();
        // One node only, for ever: the servers go to it after ExpectedNodesWait.
        region.FishForMessage(m =>
        {
            if (m is GetShardRegionState) region.Reply(NoShardHere);
            if (m is GetClusterShardingStats) region.Reply(Stats(1, 0));
            if (m is EnsureCollecting e) ensured.Add(e.SrvId);
            return m is EnsureCollecting;
        }, TimeSpan.FromSeconds(10));
        Assert.InRange(sw.Elapsed.TotalSeconds, 2.5, 10);

        // A coordinator that starts in a running cluster (shards allocated: it took over from a node that died)
        // ensures at once, though fewer nodes than expected are left; at once too when its own node holds shards.
        var region2 = StartCoordinator(repo, settings);
        Answer(region2, 2, 7);
        var again = region2.ReceiveN(3, TimeSpan.FromSeconds(5)).Cast<EnsureCollecting>().Select(e => e.SrvId).Order().ToList();
        Assert.Equal(ids, again);
        var region3 = StartCoordinator(repo, settings);
        region3.ExpectMsg<GetShardRegionState>(TimeSpan.FromSeconds(5));
        region3.Reply(new CurrentShardRegionState(ImmutableHashSet.Create(new ShardState("3", ImmutableHashSet.Create("3"))), ImmutableHashSet<string>.Empty));
        Assert.Equal(ids, region3.ReceiveN(3, TimeSpan.FromSeconds(5)).Cast<EnsureCollecting>().Select(e => e.SrvId).Order().ToList());
    }

    [Fact]
    public void The_ramp_bounds_attempts_in_progress_and_the_rate_and_frees_a_slot_when_a_server_goes()
    {
        var settings = new CollectorSettings { ConnectRate = 4, MaxConcurrentConnects = 2, ConnectTimeout = TimeSpan.FromSeconds(60) };
        var ramp = Sys.ActorOf(ConnectRamp.Props(settings));
        var servers = Enumerable.Range(0, 5).Select(_ => CreateTestProbe()).ToList();
        for (var i = 0; i < servers.Count; i++) servers[i].Send(ramp, new RequestConnect(i, 1, TimeSpan.FromSeconds(60)));

        // Two attempts at most: the first at once, the second a quarter of a second or so later (4 a second, jitter).
        servers[0].ExpectMsg<ConnectGranted>(TimeSpan.FromSeconds(1));
        servers[1].ExpectMsg<ConnectGranted>(TimeSpan.FromSeconds(2));
        servers[2].ExpectNoMsg(TimeSpan.FromSeconds(1));
        // One attempt is over: the next server may connect.
        servers[0].Send(ramp, new ConnectFinished(1));
        servers[2].ExpectMsg<ConnectGranted>(TimeSpan.FromSeconds(2));
        // A server that stops while it connects gives its slot back.
        Watch(servers[1].Ref);
        Sys.Stop(servers[1].Ref);
        ExpectTerminated(servers[1].Ref);
        servers[3].ExpectMsg<ConnectGranted>(TimeSpan.FromSeconds(2));
        servers[4].ExpectNoMsg(TimeSpan.FromMilliseconds(500));

        // Ten servers at 4 a second, slots to spare: spaced out (the last one not within 0.8 s), all within a few seconds.
        var wide = Sys.ActorOf(ConnectRamp.Props(new CollectorSettings { ConnectRate = 4, MaxConcurrentConnects = 100 }));
        var ten = Enumerable.Range(0, 10).Select(_ => CreateTestProbe()).ToList();
        var sw = System.Diagnostics.Stopwatch.StartNew();
        for (var i = 0; i < ten.Count; i++) ten[i].Send(wide, new RequestConnect(100 + i, 1, TimeSpan.FromSeconds(60)));
        ten[9].ExpectNoMsg(TimeSpan.FromMilliseconds(800) - sw.Elapsed);
        foreach (var p in ten) p.ExpectMsg<ConnectGranted>(TimeSpan.FromSeconds(6));
    }

    [Fact]
    public void A_handed_off_server_leaves_what_it_read_to_the_writers_in_order_and_stops_at_once()
    {
        var remote = fx.Lab.Remotes[1];
        var writers = CreateTestProbe();
        var settings = CollectorNode.FastSettings();
        settings.ResyncInterval = TimeSpan.FromMinutes(1);
        settings.HandOffTimeout = TimeSpan.FromSeconds(30);
        var ramp = Sys.ActorOf(ConnectRamp.Props(settings));
        var entity = Sys.ActorOf(ServerCollector.Props(settings, new PowaVersion(4, 1, "4.1.4"), writers.Ref,
            new Collector.Staging.StageBudget(1 << 20, Path.Combine(Path.GetTempPath(), $"powa-cluster-test-stage-{Guid.NewGuid():N}")),
            ramp: ramp), "47");
        var config = new ServerConfig(47, remote.Host(11), remote.Port, "postgres", remote.Password, "powa", 1, "h");
        // The entity says at debug level how many of its snapshots wait for the repository.
        var logs = CreateTestProbe();
        Sys.EventStream.Subscribe(logs.Ref, typeof(Akka.Event.Debug));
        entity.Tell(new EnsureCollecting(47, "v1"));
        writers.ExpectMsg<ReadServer>(TimeSpan.FromSeconds(5));
        writers.Reply(new ServerRead(47, new ServerRow(config, "v1"), null));
        // Through the node's ramp, then connected.
        writers.ExpectMsg<RestoreSchedule>(TimeSpan.FromSeconds(10));
        var plan = new SnapshotPlan([new Datasource("pg_stat_statements", false, "powa_statements_src", null, "powa_statements_snapshot", "public")], []);
        writers.Reply(new ScheduleRestored(47, new LastSnapshot(true, DateTimeOffset.UtcNow.AddSeconds(-0.8)), plan, null));

        // The repository does not answer: the first snapshot stays at a writer, the next two wait in the server's queue.
        var first = writers.ExpectMsg<StoreSnapshot>(TimeSpan.FromSeconds(3));
        first.Stage!.Dispose();
        logs.FishForMessage<Akka.Event.Debug>(d => d.LogSource.Contains("/47") && $"{d.Message}".Contains("3 waiting for the repository"),
            TimeSpan.FromSeconds(10), "two more snapshots read and queued behind the first");
        // Sharding hands the shard off: the queue goes to the writers at once, oldest first, with nobody to answer,
        // and the entity stops without waiting for the repository.
        Watch(entity);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        entity.Tell(StopEntity.Instance);
        var left = new List<StoreSnapshot>();
        FishForMessage<Terminated>(t => t.ActorRef.Equals(entity), TimeSpan.FromSeconds(5));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(3), $"stopped after {sw.Elapsed.TotalSeconds:F1} s");
        while (writers.HasMessages) left.Add(writers.ExpectMsg<StoreSnapshot>());
        try
        {
            Assert.InRange(left.Count, 2, 3);
            Assert.All(left, l => Assert.True(l.ReplyTo.IsNobody()));
            Assert.Equal(left.Select(l => l.Sequence).Order(), left.Select(l => l.Sequence));
            Assert.All(left, l => Assert.True(l.Sequence > first.Sequence));
        }
        finally
        {
            foreach (var l in left) l.Stage!.Dispose();
        }
    }
}
