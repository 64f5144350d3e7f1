using Akka.Actor;
using Akka.Cluster;
using Akka.Event;

namespace PowaCluster.Collector.Actors;

/// <summary>
/// Every node of a cluster collects into one repository: a node started with another repository's DSN (a
/// staging node that reaches the production cluster) would take servers whose rows it reads from elsewhere.
/// Each node carries what its repository is (RepositoryQueries.IdentityAsync: system identifier and database
/// oid) as a cluster role (powa-repository-IDENTITY); a node whose repository is not the cluster's (the one
/// most Up members have; on a tie, the oldest member's: ShardCountGuard.ClusterValue) logs both and leaves
/// (exit code 1) before it is given a server. A node that could not read its identity, or a 0.2.0 node,
/// carries none and is not checked.
/// </summary>
public sealed class RepositoryGuard : ReceiveActor
{
    public const string RolePrefix = "powa-repository-";

    readonly ILoggingAdapter _log = Context.GetLogger();
    readonly Cluster _cluster = Cluster.Get(Context.System);
    readonly string _mine;
    readonly string _describe;
    bool _done;

    /// <param name="identity">this node's repository identity</param>
    /// <param name="describe">this node's repository as host:port/dbname, for the log</param>
    public RepositoryGuard(string identity, string describe)
    {
        (_mine, _describe) = (identity, describe);
        Receive<ClusterEvent.CurrentClusterState>(_ => Check());
        Receive<ClusterEvent.IMemberEvent>(_ => Check());
    }

    protected override void PreStart() =>
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsSnapshot, typeof(ClusterEvent.IMemberEvent));

    protected override void PostStop() => _cluster.Unsubscribe(Self);

    /// <summary>A member's repository identity, from its role; null for a member without one.</summary>
    public static string? RepositoryOf(Member m) =>
        m.Roles.FirstOrDefault(r => r.StartsWith(RolePrefix, StringComparison.Ordinal))?[RolePrefix.Length..];

    void Check()
    {
        if (_done) return;
        var members = _cluster.State.Members;
        // ClusterValue counts values: the identities go through their rank in this list.
        var ids = members.Select(RepositoryOf).OfType<string>().Distinct().ToList();
        if (ShardCountGuard.ClusterValue(members, m => RepositoryOf(m) is { } r ? ids.IndexOf(r) : (int?)null) is not { } i || ids[i] == _mine) return;
        _done = true;
        var theirs = ids[i];
        var where = string.Join(", ", members.Where(m => RepositoryOf(m) == theirs).Select(m => m.Address.HostPort()).Take(3));
        _log.Error("This node's repository {0} is the database {1}, but the cluster it joined (nodes {2}) collects into the database {3}: " +
                   "every node of a cluster must use the same repository. Leaving the cluster: give this node the cluster's repository DSN, " +
                   "or its own cluster (other seeds, another certificate authority).", _describe, _mine, where, theirs);
        CoordinatedShutdown.Get(Context.System).Run(RepositoryMismatchReason.Instance);
    }

    public static Props Props(string identity, string describe) => Akka.Actor.Props.Create(() => new RepositoryGuard(identity, describe));
}

/// <summary>The node left because its repository is not its cluster's: exit code 1.</summary>
public sealed class RepositoryMismatchReason : CoordinatedShutdown.Reason
{
    public static readonly RepositoryMismatchReason Instance = new();
    RepositoryMismatchReason() { }
    public override int ExitCode => 1;
}
