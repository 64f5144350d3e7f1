using Akka.Cluster.Sharding;
using PowaCluster.Collector.Actors;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Hosting;
using PowaCluster.Collector.Scheduling;
using PowaCluster.Collector.Sharding;
using Xunit;

namespace PowaCluster.Tests.Unit;

public sealed class ShardingTests
{

    [Fact]
    public void Consecutive_srvids_fill_the_shards_evenly()
    {
        var x = new ServerMessageExtractor(100);
        // 60 servers: 60 shards of one server each, so least-shard allocation gives 20 to each of 3 nodes.
        var shards = Enumerable.Range(1, 60).Select(id => x.ShardId(new EnsureCollecting(id, "1"))).ToList();
        Assert.Equal(60, shards.Distinct().Count());
        // 1000 servers: 10 per shard, exactly.
        var sizes = Enumerable.Range(1, 1000).GroupBy(id => x.ShardId(id.ToString())).Select(g => g.Count()).ToList();
        Assert.Equal(100, sizes.Count);
        Assert.All(sizes, n => Assert.Equal(10, n));
    }

    [Fact]
    public void Every_server_message_goes_to_its_entity_and_nothing_else_is_routed()
    {
        var x = new ServerMessageExtractor(10);
        Assert.Equal("42", x.EntityId(new GetServerStatus(42)));
        Assert.Equal("2", x.ShardId(new ForceSnapshot(42)));
        Assert.Equal("42", x.EntityId(new StopCollecting(42)));
        Assert.Null(x.EntityId("not a server message"));
        var m = new EnsureCollecting(3, "1");
        Assert.Same(m, x.EntityMessage(m));
        // Not a number (never sent by the collector): still the same shard on every node.
        Assert.Equal(x.ShardId("abc"), new ServerMessageExtractor(10).ShardId("abc"));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ServerMessageExtractor(0));
    }

    static readonly DateTime Now = new(2026, 11, 26, 12, 0, 0, DateTimeKind.Utc);
    static readonly TimeSpan F = TimeSpan.FromSeconds(10);

    [Theory]
    [InlineData(0.0)]
    [InlineData(0.5)]
    [InlineData(0.999)]
    public void First_snapshot_of_a_started_entity(double random)
    {
        // Never snapshotted: anywhere in the interval.
        var due = ServerSchedule.FirstDue(null, F, Now, random);
        Assert.InRange(due, Now, Now + F);
        // Snapshotted 4 s ago (a hand-off): on schedule, 6 s from now, whatever the random draw.
        Assert.Equal(Now + TimeSpan.FromSeconds(6), ServerSchedule.FirstDue(Now - TimeSpan.FromSeconds(4), F, Now, random));
        // Taken over 13 s after the last one: overdue, and before 14 s (1.4 intervals) have passed since the
        // last one, so that the gap stays under 1.5 intervals (an interval lost) with the writer queue's time.
        due = ServerSchedule.FirstDue(Now - TimeSpan.FromSeconds(13), F, Now, random);
        Assert.InRange(due, Now, Now + TimeSpan.FromSeconds(1));
        // 14.5 s after: at once, the gap is already near 1.5 intervals.
        Assert.Equal(Now, ServerSchedule.FirstDue(Now - TimeSpan.FromSeconds(14.5), F, Now, random));
        // Long ago (a dead node's servers, an outage): soon, spread over a fifth of an interval.
        due = ServerSchedule.FirstDue(Now - TimeSpan.FromSeconds(25), F, Now, random);
        Assert.InRange(due, Now, Now + F / 5);
        due = ServerSchedule.FirstDue(Now - TimeSpan.FromHours(1), F, Now, random);
        Assert.InRange(due, Now, Now + F / 5);
    }

    [Fact]
    public void Random_phases_spread_servers_registered_together()
    {
        var rnd = new Random(7);
        var dues = Enumerable.Range(0, 100).Select(_ => (ServerSchedule.FirstDue(null, F, Now, rnd.NextDouble()) - Now).TotalSeconds).ToList();
        // Each tenth of the interval gets some of them.
        Assert.Equal(10, dues.Select(d => (int)d).Distinct().Count());
    }

    [Fact]
    public void Split_brain_resolver_and_sharding_settings_follow_the_settings()
    {
        var s = new CollectorSettings { StableAfter = TimeSpan.FromSeconds(7), HandOffTimeout = TimeSpan.FromSeconds(20) };
        var sbr = Akka.Configuration.ConfigurationFactory.ParseString(ClusterConfiguration.SplitBrainHocon(s));
        Assert.Equal("keep-majority", sbr.GetString("akka.cluster.split-brain-resolver.active-strategy"));
        Assert.Equal(TimeSpan.FromSeconds(7), sbr.GetTimeSpan("akka.cluster.split-brain-resolver.stable-after"));
        Assert.Equal(TimeSpan.FromSeconds(3), sbr.GetTimeSpan("akka.cluster.down-removal-margin"));
        var sh = Akka.Configuration.ConfigurationFactory.ParseString(ShardingConfiguration.ShardingHocon(s));
        Assert.Equal(TimeSpan.FromSeconds(20), sh.GetTimeSpan("akka.cluster.sharding.handoff-timeout"));
        Assert.True(sh.GetInt("akka.cluster.sharding.least-shard-allocation-strategy.rebalance-absolute-limit") > 0);
        Assert.Equal(TimeSpan.FromSeconds(25), sh.GetTimeSpan("akka.coordinated-shutdown.phases.cluster-sharding-shutdown-region.timeout"));
        // A stopping node's writers store (or spool) what its servers left while it is still a member.
        Assert.Equal(TimeSpan.FromSeconds(45), sh.GetTimeSpan($"akka.coordinated-shutdown.phases.{NodeActorsConfiguration.StoreWhatWasReadPhase}.timeout"));
        Assert.Contains(NodeActorsConfiguration.StoreWhatWasReadPhase, sh.GetStringList("akka.coordinated-shutdown.phases.cluster-leave.depends-on"));
        Assert.True(Host.Startup.CollectorHost.ShutdownTimeout(s) > s.HandOffTimeout + TimeSpan.FromSeconds(5));
    }
}
