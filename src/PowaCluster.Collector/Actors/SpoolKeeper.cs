using Akka.Actor;
using Akka.Cluster;
using Akka.Event;
using Akka.Hosting;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Hosting;
using PowaCluster.Collector.Postgres;
using PowaCluster.Collector.Serialization;
using PowaCluster.Collector.Spooling;

namespace PowaCluster.Collector.Actors;

/// <summary>A server's entity on this node replays its spool from now on (Claimed), or no longer does (it stopped).</summary>
public sealed record BacklogClaimed(int SrvId, bool Claimed);

/// <summary>
/// A server's entity on this node was handed off and left Count snapshots, from OldestUtc on, to the node's
/// writers: the keeper tells the server's new entity (BacklogHeld) until the writers have stored them.
/// </summary>
public sealed record LeftToWriters(int SrvId, DateTime OldestUtc, int Count);

/// <summary>
/// One per node: applies the spool's age bound, and replays the backlogs no entity of this node claims: a
/// server collected elsewhere now (its shard moved while the repository was down, or this node restarted and
/// the server went to another node). Each such backlog is stored oldest first, one snapshot at a time, through
/// the node's writers (as replays: live snapshots go first). A server whose entity starts here meanwhile
/// claims its spool, and the keeper leaves it after the snapshot in flight. When every member is 0.3.0 or
/// later, each sweep tells the server's entity, wherever it runs, what this node holds (BacklogHeld), and the
/// backlog is stored when the entity gives it the turn (BacklogTurn: it is the oldest of that server's); else
/// the backlogs are replayed two resync intervals after the node starts. The repository's fence keeps the
/// history in order whoever stores first: a spooled snapshot older than the server's last stored one is
/// dropped (counted), never stored back in time.
/// </summary>
public sealed class SpoolKeeper : ReceiveActor, IWithTimers
{
    readonly TimeProvider _time = NodeServices.Of(Context.System).Time; // the node's clock (NodeServices)
    DateTime CurrentUtc => _time.GetUtcNow().UtcDateTime;
    readonly SnapshotSpool _spool;
    readonly IActorRef _writers;
    readonly ILoggingAdapter _log = Context.GetLogger();
    readonly TimeSpan _grace;
    readonly DateTime _startedUtc;
    readonly Dictionary<int, SpoolEntry> _inFlight = [];   // srvid -> the orphan snapshot at a writer
    readonly HashSet<int> _announced = [];
    readonly HashSet<int> _claimed = [];                   // servers whose entity on this node replays their spool
    readonly Dictionary<int, DateTime> _turnUntil = [];    // srvid -> the turn its entity gave: what was taken before this
    long _sequence;
    IActorRef? _region;                                    // the shard region, once it exists: BacklogHeld goes to the entity wherever it runs
    readonly string _self = NodeCluster.Of(Context.System)?.SelfAddress.ToString() ?? "";

    public ITimerScheduler Timers { get; set; } = null!;

    /// <param name="grace">how long after the node starts the backlogs wait for their entities to claim them</param>
    public SpoolKeeper(SnapshotSpool spool, IActorRef writers, TimeSpan grace)
    {
        (_spool, _writers, _grace, _startedUtc) = (spool, writers, grace, CurrentUtc);
        Receive<Sweep>(_ => OnSweep());
        Receive<BacklogTurn>(m =>
        {
            // The turn covers what was taken before Until: another node (or the entity) holds the next ones.
            _turnUntil[m.SrvId] = m.UntilUtc ?? DateTime.MaxValue;
            _turnFrom[m.SrvId] = Sender;
            if (!_inFlight.ContainsKey(m.SrvId)) Replay(_spool.For(m.SrvId));
        });
        Receive<LeftToWriters>(m =>
        {
            // Announced only if the writers still hold them at their first answer (2 s): a snapshot whose store
            // was just in flight is not worth the new entity's wait.
            _leftToWriters[m.SrvId] = m;
            if (!Timers.IsTimerActive("writers")) Timers.StartPeriodicTimer("writers", AskWriters.Instance, TimeSpan.FromSeconds(2));
        });
        Receive<AskWriters>(_ =>
        {
            if (_leftToWriters.Count > 0) _writers.Tell(new GetWorkPendingFor(_leftToWriters.Keys.ToList()));
            else Timers.Cancel("writers");
        });
        Receive<WorkPendingFor>(OnWorkPending);
        Receive<BacklogClaimed>(m =>
        {
            if (m.Claimed) _claimed.Add(m.SrvId);
            else if (_claimed.Remove(m.SrvId)) Announce(m.SrvId); // handed off: its new node hears of this backlog before it stores
        });
        Receive<SnapshotStored>(m =>
        {
            if (!_inFlight.Remove(m.SrvId)) return;
            if (m.Result.Outcome != StoreOutcome.Stored)
                _log.Warning("Server {0}: spooled snapshot (no entity on this node) {1}: {2}", m.SrvId,
                    m.Result.Outcome switch
                    {
                        StoreOutcome.Refused => "refused and dropped",
                        StoreOutcome.Rejected => "rejected and moved aside",
                        _ => "skipped",
                    }, m.Result.SkipReason);
            var server = _spool.For(m.SrvId);
            if (HoldsNone(m.SrvId)) Tell(new BacklogDrained(m.SrvId, _self));
            else if (_turnUntil.TryGetValue(m.SrvId, out var until) && server.OldestUtc >= until)
            {
                _turnUntil.Remove(m.SrvId);
                Announce(m.SrvId); // its turn is over: what is left waits for the next
                return;
            }
            Replay(server); // the next one at once
        });
        Receive<SnapshotNotStored>(m =>
        {
            if (!_inFlight.Remove(m.SrvId)) return;
            if (!m.Spooled) _log.Warning("Server {0}: a spooled snapshot is refused by the repository and dropped: {1}", m.SrvId, m.Error);
            if (HoldsNone(m.SrvId)) Tell(new BacklogDrained(m.SrvId, _self));
            else _log.Debug("Server {0}: spooled snapshot not replayed yet: {1}", m.SrvId, m.Error);
        });
    }

    protected override void PreStart() => Timers.StartPeriodicTimer("sweep", Sweep.Instance, TimeSpan.FromSeconds(10));

    void OnSweep()
    {
        _spool.Expire();
        _announceLeft = true; // the writers' next word says again what they still hold
        if (Announce()) return; // every member takes part: each backlog is stored when its entity gives it the turn
        if (CurrentUtc - _startedUtc < _grace) return;
        foreach (var server in _spool.WithBacklog())
            if (!_claimed.Contains(server.SrvId) && !_inFlight.ContainsKey(server.SrvId)) Replay(server);
    }

    void Replay(ServerSpool server)
    {
        if (_claimed.Contains(server.SrvId)) return;
        if (_turnUntil.TryGetValue(server.SrvId, out var until) && server.OldestUtc >= until) return;
        if (server.TakeOldest() is not { } entry) return;
        if (_announced.Add(server.SrvId))
            _log.Info("Server {0}: {1} snapshots spooled on this node, where it is not collected now, are replayed by this node", server.SrvId, server.Count);
        _inFlight[server.SrvId] = entry;
        _writers.Tell(new StoreSnapshot(null, ++_sequence, Self, server, entry));
    }

    /// <summary>
    /// Tells the entity of each server whose backlog this node holds unclaimed, wherever it runs, to store
    /// nothing of its own before this older backlog (BacklogHeld): a server moved during an outage, whose new
    /// node would otherwise store a live snapshot first and the fence drop this backlog. Only when every member
    /// reads the message (0.3.0 and later).
    /// </summary>
    bool Announce()
    {
        if (_region is null && !ActorRegistry.For(Context.System).TryGet<ServerCollector>(out _region) || !AllTakePart()) return false;
        var held = new HashSet<int>();
        foreach (var server in _spool.WithBacklog())
            if (!_claimed.Contains(server.SrvId) && server.OldestUtc is { } oldest)
            {
                _region.Tell(new BacklogHeld(server.SrvId, _self, oldest, server.Count));
                held.Add(server.SrvId);
            }
        // A backlog announced before and gone since without this keeper's replay (its entity here stored it
        // before it handed the server off): its entity elsewhere need not wait for it.
        foreach (var gone in _held.Where(id => !held.Contains(id) && !_claimed.Contains(id) && !_leftToWriters.ContainsKey(id)))
            _region.Tell(new BacklogDrained(gone, _self));
        _held.Clear();
        _held.UnionWith(held);
        return true;
    }

    readonly HashSet<int> _held = []; // the servers whose backlog the last sweep announced

    /// <summary>What this node holds of one server (its spool, and what its entity left to the writers when handed off), to its entity.</summary>
    void Announce(int srvid)
    {
        var server = _spool.For(srvid);
        var left = _leftAnnounced.Contains(srvid) ? _leftToWriters.GetValueOrDefault(srvid) : null;
        var oldest = new[] { server.OldestUtc, left?.OldestUtc }.Min();
        if (oldest is not { } from || _region is null || !AllTakePart() || !OthersUp()) return;
        _region.Tell(new BacklogHeld(srvid, _self, from, server.Count + (left?.Count ?? 0)));
        _held.Add(srvid);
    }

    /// <summary>
    /// The writers' word on what handed-off entities left them: still there, said again (the new entity keeps
    /// waiting); stored, and nothing spooled either, the new entity goes on (BacklogDrained).
    /// </summary>
    void OnWorkPending(WorkPendingFor m)
    {
        // Only the servers asked about: one left to the writers after the question was sent is not in the answer.
        foreach (var srvid in m.Asked.Where(_leftToWriters.ContainsKey))
        {
            if (m.SrvIds.Contains(srvid))
            {
                if (_leftAnnounced.Add(srvid) || _announceLeft) Announce(srvid);
                continue;
            }
            _leftToWriters.Remove(srvid);
            if (_leftAnnounced.Remove(srvid) && _spool.For(srvid).Count == 0 && !_inFlight.ContainsKey(srvid))
            {
                _held.Remove(srvid);
                Tell(new BacklogDrained(srvid, _self));
            }
        }
        _announceLeft = false;
    }

    bool _announceLeft;

    /// <summary>Nothing of the server is left on this node: its spool is empty, and its writers hold none of what its entity left them.</summary>
    bool HoldsNone(int srvid) => _spool.For(srvid).Count == 0 && !_leftToWriters.ContainsKey(srvid);

    readonly Dictionary<int, LeftToWriters> _leftToWriters = []; // handed-off servers whose snapshots the writers still hold
    readonly HashSet<int> _leftAnnounced = [];                     // those of them whose new entity was told

    /// <summary>
    /// Another member can take a handed-off server: alone, this node's region would hold the message for a shard
    /// that has no new home, and its shutdown would wait for it until the hand-off timeout.
    /// </summary>
    bool OthersUp() => NodeCluster.Of(Context.System) is { } cluster
        && cluster.State.Members.Any(m => m.Status == MemberStatus.Up && m.Address != cluster.SelfAddress);

    bool AllTakePart() => NodeCluster.Of(Context.System) is { } cluster
        && WireFormats.AllShareState(cluster.State.Members.Select(m => m.AppVersion));

    /// <summary>
    /// Through the shard region, and to the entity that gave the turn, if one did: a stopping node's region is
    /// gone while its writers drain, and the entity waiting for them hears it all the same.
    /// </summary>
    void Tell(BacklogDrained m)
    {
        if (_region is not null) _region.Tell(m);
        if (_turnFrom.Remove(m.SrvId, out var entity)) entity.Tell(m);
    }

    readonly Dictionary<int, IActorRef> _turnFrom = []; // srvid -> the entity that gave the last turn

    sealed record AskWriters
    {
        public static readonly AskWriters Instance = new();
    }

    sealed record Sweep
    {
        public static readonly Sweep Instance = new();
    }

    public static Props Props(SnapshotSpool spool, IActorRef writers, CollectorSettings settings) =>
        Akka.Actor.Props.Create(() => new SpoolKeeper(spool, writers, settings.ResyncInterval * 2));
}
