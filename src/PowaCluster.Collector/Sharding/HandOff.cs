using Akka.Actor;
using Akka.Cluster;
using PowaCluster.Collector.Actors;

namespace PowaCluster.Collector.Sharding;

/// <summary>
/// Sharding starts an entity again only when a message comes for it. A handed-off server must not wait for
/// the coordinator's next resync, nor for the coordinator itself when it lives on the node that is leaving:
/// the server's EnsureCollecting goes to the shard region of another Up member (which routes it to the
/// shard's new home), and the coordinator is told too. Both are idempotent.
/// </summary>
public static class HandOff
{
    public static void AskToGoOnElsewhere(IActorContext context, int srvid, string rowVersion, IActorRef coordinator, Random random)
    {
        if (Hosting.NodeCluster.Of(context.System) is not { } cluster) return;
        // Only members of this node's NumberOfShards (its role): another number's region would start the server
        // under a coordinator of its own.
        var role = cluster.SelfRoles.FirstOrDefault(r => r.StartsWith(Hosting.AkkaConfiguration.ShardRolePrefix, StringComparison.Ordinal));
        var others = cluster.State.Members
            .Where(m => m.Status == MemberStatus.Up && !m.Address.Equals(cluster.SelfAddress) && (role is null || m.HasRole(role))).ToList();
        // The last node of the cluster is stopping: there is nowhere to go.
        if (others.Count == 0) return;
        var region = others[random.Next(others.Count)].Address + context.Self.Path.Parent.Parent.ToStringWithoutAddress();
        context.ActorSelection(region).Tell(new EnsureCollecting(srvid, rowVersion));
        coordinator.Tell(new ServerHandedOff(srvid));
    }
}
