using Akka.Actor;
using Akka.Cluster;
using Akka.Configuration;
using PowaCluster.Collector.Actors;
using PowaCluster.Collector.Hosting;
using PowaCluster.Collector.Serialization;
using PowaCluster.Tests.Support;
using Xunit;

namespace PowaCluster.Tests.Actors;

/// <summary>
/// A rollout mixes versions in one cluster: a node writes the format every member reads (0.1.0's layout while a
/// 0.1.0 node is a member, wire.proto otherwise), and messages cross both ways. The 0.1.0 node here is this
/// build with 0.1.0's app-version (it reads both formats); the golden files prove what 0.1.0 itself reads.
/// </summary>
public sealed class MixedVersionTests
{
    static ActorSystem Node(string appVersion, string? seed = null) => ActorSystem.Create(AkkaConfiguration.SystemName,
        ConfigurationFactory.ParseString($$"""
            akka.actor.provider = cluster
            akka.loglevel = WARNING
            akka.remote.dot-netty.tcp { hostname = 127.0.0.1, port = 0 }
            akka.cluster.app-version = "{{appVersion}}"
            akka.cluster.min-nr-of-members = 1
            """).WithFallback(ConfigurationFactory.ParseString(RemotingConfiguration.SerializationHocon)));

    /// <summary>Answers a server's status with its srvid, as an entity does.</summary>
    sealed class StatusAnswer : ReceiveActor
    {
        public StatusAnswer() => Receive<GetServerStatus>(m => Sender.Tell(new ServerStatus(m.SrvId, CollectorStatus.Running, "n", null, "é", 1, 0)));
    }

    static string ManifestOf(ActorSystem node, object m) =>
        ((ClusterMessageSerializer)node.Serialization.FindSerializerFor(m)).Manifest(m);

    static Task Up(ActorSystem node, int members) => Eventually.HoldsAsync(
        () => Task.FromResult(Cluster.Get(node).State.Members.Count(m => m.Status == MemberStatus.Up) == members),
        TimeSpan.FromSeconds(30), $"{members} members up");

    [Fact]
    public async Task A_new_node_writes_0_1_0s_format_while_a_0_1_0_node_is_a_member_and_wire_proto_after()
    {
        Assert.Equal(CollectorVersion.Text, ClusterConfiguration.AppVersionHocon.Split('"')[1]);
        var current = Node(CollectorVersion.Text);
        var older = Node("0.1.0");
        try
        {
            var self = Cluster.Get(current).SelfAddress;
            await Cluster.Get(current).JoinAsync(self);
            await Up(current, 1);
            Assert.Equal("1:stop", ManifestOf(current, new StopCollecting(1)));

            await Cluster.Get(older).JoinAsync(self);
            await Up(current, 2);
            Assert.Equal("stop", ManifestOf(current, new StopCollecting(1)));
            Assert.Equal("stop", ManifestOf(older, new StopCollecting(1)));

            // Both ways across the network, in the format of the older node.
            older.ActorOf(Props.Create(() => new StatusAnswer()), "answer");
            current.ActorOf(Props.Create(() => new StatusAnswer()), "answer");
            var olderAddress = Cluster.Get(older).SelfAddress;
            var fromOlder = await current.ActorSelection(new RootActorPath(olderAddress) / "user" / "answer")
                .Ask<ServerStatus>(new GetServerStatus(41), TimeSpan.FromSeconds(10));
            Assert.Equal(41, fromOlder.SrvId);
            var fromCurrent = await older.ActorSelection(new RootActorPath(self) / "user" / "answer")
                .Ask<ServerStatus>(new GetServerStatus(42), TimeSpan.FromSeconds(10));
            Assert.Equal(("é", 42), (fromCurrent.LastError, fromCurrent.SrvId));

            // The older node leaves: back to wire.proto.
            await Cluster.Get(older).LeaveAsync();
            await Eventually.HoldsAsync(() => Task.FromResult(Cluster.Get(current).State.Members.Count == 1), TimeSpan.FromSeconds(30), "the older node removed");
            Assert.Equal("1:stop", ManifestOf(current, new StopCollecting(1)));
        }
        finally
        {
            await Task.WhenAll(older.Terminate(), current.Terminate());
        }
    }
}
