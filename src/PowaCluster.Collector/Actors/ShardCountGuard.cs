using Akka.Actor;
using Akka.Cluster;
using Akka.Event;
using PowaCluster.Collector.Hosting;

namespace PowaCluster.Collector.Actors;

/// <summary>
/// A server's shard is its srvid modulo NumberOfShards: nodes that disagree on the number place one server in
/// two shards, which two nodes may collect at once. Every node carries its number as a cluster role
/// (powa-shards-N); the shard regions and the FleetCoordinator run only on nodes of the node's own role, so a
/// node with another number is never given a server; and this actor, on every node, compares the numbers of
/// the Up members: a node whose number is not the cluster's (the one most Up members have; on a tie, the
/// oldest member's) logs why and shuts down (exit code 1). Akka.NET 1.5 has no join-time configuration check.
/// </summary>
public sealed class ShardCountGuard : ReceiveActor
{
    readonly ILoggingAdapter _log = Context.GetLogger();
    readonly Cluster _cluster = Cluster.Get(Context.System);
    readonly int _mine;
    bool _done;

    public ShardCountGuard(int numberOfShards)
    {
        _mine = numberOfShards;
        Receive<ClusterEvent.CurrentClusterState>(_ => Check());
        Receive<ClusterEvent.IMemberEvent>(_ => Check());
    }

    protected override void PreStart() =>
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsSnapshot, typeof(ClusterEvent.IMemberEvent));

    protected override void PostStop() => _cluster.Unsubscribe(Self);

    /// <summary>The number of shards of a member, from its role; null for a member without one.</summary>
    public static int? ShardsOf(Member m) =>
        m.Roles.Select(r => r.StartsWith(ClusterConfiguration.ShardRolePrefix, StringComparison.Ordinal)
                && int.TryParse(r.AsSpan(ClusterConfiguration.ShardRolePrefix.Length), out var n) ? n : (int?)null)
            .FirstOrDefault(n => n is not null);

    /// <summary>The cluster's number of shards: the one most Up members have; on a tie, the oldest member's.</summary>
    public static int? ClusterShards(IEnumerable<Member> members) => ClusterValue(members, ShardsOf);

    /// <summary>What most Up members that carry one have (their role); on a tie, the oldest member's; null when none does.</summary>
    public static T? ClusterValue<T>(IEnumerable<Member> members, Func<Member, T?> valueOf) where T : struct
    {
        var up = members.Where(m => m.Status == MemberStatus.Up && valueOf(m) is not null).ToList();
        if (up.Count == 0) return null;
        var oldest = valueOf(up.OrderBy(m => m, Member.AgeOrdering).First());
        return up.GroupBy(m => valueOf(m)!.Value)
            .OrderByDescending(g => g.Count()).ThenByDescending(g => g.Key.Equals(oldest))
            .First().Key;
    }

    void Check()
    {
        if (_done) return;
        var members = _cluster.State.Members;
        if (ClusterShards(members) is not { } theirs || theirs == _mine) return;
        // Decided as soon as the members of the cluster this node joins are seen, before this node is Up: its
        // singletons and shards (of its own role) never start.
        _done = true;
        var where = string.Join(", ", members.Where(m => ShardsOf(m) == theirs).Select(m => m.Address.HostPort()).Take(3));
        _log.Error("This node has NumberOfShards {0} but the cluster it joined has {1} (nodes {2}): one server would belong to " +
                   "two shards and two nodes could collect it. Leaving the cluster: set NumberOfShards to {1} on this node, or " +
                   "stop the whole cluster to change it.", _mine, theirs, where);
        CoordinatedShutdown.Get(Context.System).Run(ShardCountMismatchReason.Instance);
    }

    public static Props Props(int numberOfShards) => Akka.Actor.Props.Create(() => new ShardCountGuard(numberOfShards));
}

/// <summary>The node left because its NumberOfShards differs from its cluster's: exit code 1.</summary>
public sealed class ShardCountMismatchReason : CoordinatedShutdown.Reason
{
    public static readonly ShardCountMismatchReason Instance = new();
    ShardCountMismatchReason() { }
    public override int ExitCode => 1;
}
