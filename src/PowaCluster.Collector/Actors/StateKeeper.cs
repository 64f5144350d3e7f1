using Akka.Actor;
using Akka.Cluster;
using Akka.Event;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Hosting;
using PowaCluster.Collector.Postgres;
using PowaCluster.Collector.Serialization;
using PowaCluster.Collector.Spooling;

namespace PowaCluster.Collector.Actors;

/// <summary>An entity of this node saw its server's plan (from the repository) or stops with a last snapshot taken.</summary>
public sealed record ServerPlanSeen(int SrvId, SnapshotPlan? Plan, DateTime? LastTakenUtc);

/// <summary>The same, from another node's StateKeeper: the server may move here.</summary>
public sealed record ServerStateShared(int SrvId, SnapshotPlan? Plan, DateTime? LastTakenUtc) : IWireMessage
{
    // By value, plan included (a record compares the plan's lists by reference).
    public bool Equals(ServerStateShared? other) =>
        other is not null && SrvId == other.SrvId && LastTakenUtc == other.LastTakenUtc
        && (Plan is null ? other.Plan is null : other.Plan is not null && Plan.SameAs(other.Plan));

    public override int GetHashCode() => HashCode.Combine(SrvId, LastTakenUtc);
}

/// <summary>An entity that cannot read its row or schedule from the repository asks its node what it saved.</summary>
public sealed record CachedServerWanted(int SrvId);

/// <summary>Server is null when this node knows nothing of it.</summary>
public sealed record CachedServerFound(int SrvId, CachedServer? Server);

/// <summary>The coordinator that cannot read powa_servers asks its node for the servers it saved.</summary>
public sealed record CachedFleetWanted
{
    public static readonly CachedFleetWanted Instance = new();
}

/// <summary>The rows without their passwords, as the coordinator reads them from the repository.</summary>
public sealed record CachedFleetFound(IReadOnlyList<ServerRow> Rows, DateTime SavedUtc);

/// <summary>
/// One per node: keeps the node's state (NodeState: the active servers' rows, their plans, when each was last
/// taken) in memory and in its file beside the spool, so that a node started while the repository is down, a
/// server that moves to this node during an outage, and a coordinator that starts during one can collect.
/// Reads powa_servers (with the passwords, which never leave the node) through the node's writers every
/// ResyncInterval; hears the plans its entities see and tells the other nodes' keepers (0.3.0 and later), whose
/// servers may move here; saves the file at most every few seconds, only when something changed.
/// </summary>
public sealed class StateKeeper : ReceiveActor, IWithTimers
{
    public const string Name = "state-keeper";
    static readonly TimeSpan SaveEvery = TimeSpan.FromSeconds(5);

    readonly TimeProvider _time = NodeServices.Of(Context.System).Time;
    DateTime CurrentUtc => _time.GetUtcNow().UtcDateTime;
    readonly ILoggingAdapter _log = Context.GetLogger();
    readonly string _root;
    readonly IActorRef _writers;
    readonly TimeSpan _readEvery;
    NodeState _state;
    bool _dirty, _rowsKnown;
    string? _saveError;

    public ITimerScheduler Timers { get; set; } = null!;

    public StateKeeper(string root, NodeState empty, IActorRef writers, TimeSpan readEvery)
    {
        (_root, _state, _writers, _readEvery) = (root, empty, writers, readEvery);
        Receive<ReadFleet>(_ => _writers.Tell(new LoadServers(Self, Passwords: true)));
        Receive<ServersRead>(m =>
        {
            if (m.Error is not null) return; // the repository is down: what was saved stays
            _state = _state.WithRows(m.Rows, CurrentUtc, out var changed);
            _dirty |= changed || !_rowsKnown;
            _rowsKnown = true;
        });
        Receive<ServerPlanSeen>(m =>
        {
            Seen(m.SrvId, m.Plan, m.LastTakenUtc);
            Share(new ServerStateShared(m.SrvId, m.Plan, m.LastTakenUtc));
        });
        Receive<ServerStateShared>(m => Seen(m.SrvId, m.Plan, m.LastTakenUtc));
        Receive<CachedServerWanted>(m => Sender.Tell(new CachedServerFound(m.SrvId,
            _state.Servers.GetValueOrDefault(m.SrvId) is { Row: not null } s ? s : null)));
        Receive<CachedFleetWanted>(_ => Sender.Tell(new CachedFleetFound(
            _state.Servers.Values.Where(s => s.Row is not null).Select(s => s.Row! with { Config = s.Row.Config with { Password = null } })
                .OrderBy(r => r.Config.SrvId).ToList(), _state.SavedUtc))); // the coordinator sends srvids and versions: no password
        Receive<SaveTick>(_ => Save());
    }

    protected override void PreStart()
    {
        var saved = NodeState.Load(_root, _state.Repository, out var problem);
        if (problem is not null) _log.Warning("{0}; it is written anew once the repository is read", problem);
        if (saved is not null && (saved.Identity == _state.Identity || _state.Identity is null))
        {
            _state = saved with { Identity = _state.Identity ?? saved.Identity };
            _rowsKnown = true;
        }
        else if (saved is not null)
            _log.Warning("The node's saved state is for another repository (identity {0}, this one is {1}): not used", saved.Identity, _state.Identity);
        Self.Tell(ReadFleet.Instance);
        Timers.StartPeriodicTimer("read", ReadFleet.Instance, _readEvery);
        Timers.StartPeriodicTimer("save", SaveTick.Instance, SaveEvery);
    }

    protected override void PostStop() => Save();

    void Seen(int srvid, SnapshotPlan? plan, DateTime? lastTakenUtc)
    {
        _state = _state.WithSeen(srvid, plan, lastTakenUtc, out var changed);
        _dirty |= changed;
    }

    /// <summary>To the keepers of the other members that read ServerStateShared (0.3.0 and later).</summary>
    void Share(ServerStateShared m)
    {
        if (NodeCluster.Of(Context.System) is not { } cluster) return;
        foreach (var member in cluster.State.Members)
            if (member.Address != cluster.SelfAddress && member.Status == MemberStatus.Up && member.AppVersion.CompareTo(WireFormats.FirstStateSharing) >= 0)
                Context.ActorSelection(member.Address + "/user/" + Name).Tell(m);
    }

    void Save()
    {
        if (!_dirty || !_rowsKnown) return;
        try
        {
            _state.Save(_root);
            _dirty = false;
            if (_saveError is not null) _log.Info("The node's state is saved again in {0}", _root);
            _saveError = null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Said once until it works again: collecting does not depend on it, starting during an outage does.
            if (_saveError is null)
                _log.Warning("Cannot save the node's state in {0} ({1}): a restart while the repository is down would not collect", _root, e.Message);
            _saveError = e.Message;
        }
    }

    sealed record ReadFleet
    {
        public static readonly ReadFleet Instance = new();
    }

    sealed record SaveTick
    {
        public static readonly SaveTick Instance = new();
    }

    public static Props Props(CollectorRuntime rt, IActorRef writers) =>
        Akka.Actor.Props.Create(() => new StateKeeper(rt.Settings.SpoolDirectoryOrDefault,
            NodeState.Empty(Dsn.Describe(rt.Repository), rt.RepositoryIdentity, rt.Powa.Version, rt.Powa.Schema), writers, rt.Settings.ResyncInterval));
}
