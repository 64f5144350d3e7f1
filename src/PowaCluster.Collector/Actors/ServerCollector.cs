using Akka.Actor;
using Akka.Event;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Control;
using PowaCluster.Collector.Hosting;
using PowaCluster.Collector.Postgres;
using PowaCluster.Collector.Scheduling;
using PowaCluster.Collector.Spooling;
using PowaCluster.Collector.Staging;
using PowaCluster.Collector.Telemetry;
using static PowaCluster.Collector.Actors.ServerDo;

namespace PowaCluster.Collector.Actors;

/// <summary>
/// Sharded entity, one per remote server (entity id = srvid). It delivers its messages to its ServerState,
/// which decides, and performs what the state says: it owns the remote connection, the snapshots' stages,
/// the snapshot timer and the server's spool claim. One behaviour per ServerPhase. How a snapshot goes from
/// the remote to the repository: docs/architecture.md.
/// </summary>
public sealed class ServerCollector : ReceiveActor, IWithTimers, IServerSurroundings
{
    /// <summary>The remote connection and what was read off it when it opened.</summary>
    sealed record Link(RemoteConnection Conn, RemoteVersions Versions);

    readonly Deps _deps;
    readonly ServerState _state;
    readonly ILoggingAdapter _log = Context.GetLogger();
    readonly string? _node;
    readonly Dictionary<long, SnapshotStage> _stages = []; // read and not handed to a writer yet, by sequence
    readonly CancellationTokenSource _life = new();
    readonly TimeProvider _time = NodeServices.Of(Context.System).Time;
    readonly CollectorMetrics _metrics = NodeServices.Of(Context.System).Metrics;
    readonly SnapshotClock _clock;
    ServerSpool? _spool;   // this server's spool on this node, claimed
    Link? _remote;
    CachedServer? _saved;  // what the node's StateKeeper saved of this server
    SnapshotPlan? _planShared;
    readonly BacklogHolders<IActorRef> _holders; // other nodes with spooled snapshots of this server
    ServerPhase _behaviour = ServerPhase.New;

    /// <summary>What the node gives every entity: its settings and its node-local actors.</summary>
    public sealed record Deps(CollectorSettings Settings, PowaVersion RepositoryPowa, IActorRef Writers, StageBudget Stages,
        IActorRef Coordinator, IActorRef Ramp, SnapshotSpool? Spool, IActorRef Keeper, IActorRef StateKeeper);

    public ITimerScheduler Timers { get; set; } = null!;

    public ServerCollector(Deps deps)
    {
        _deps = deps;
        _clock = new SnapshotClock(_time);
        _holders = new BacklogHolders<IActorRef>(_time);
        _state = new ServerState(deps.Settings, deps.RepositoryPowa, this, _time, Random.Shared.NextDouble);
        var address = ((ExtendedActorSystem)Context.System).Provider.DefaultAddress;
        _node = address.HasGlobalScope ? address.ToString() : null; // null: not in a cluster
        Receive<EnsureCollecting>(OnEnsure);
        Receive<GetServerStatus>(_ => Sender.Tell(_state.Status(_node) with { SrvId = int.TryParse(Self.Path.Name, out var id) ? id : 0 }));
        Receive<ForceSnapshot>(m => Sender.Tell(new ForceSnapshotResult(m.SrvId, false, CollectorProtocol.ServerNotFound(m.SrvId))));
        Receive<RefreshCatalogs>(m => Sender.Tell(new RefreshCatalogsResult(m.SrvId, false, CollectorProtocol.ServerNotFound(m.SrvId))));
        Receive<StopCollecting>(_ => Context.Stop(Self));
        Receive<StopEntity>(_ => Context.Stop(Self));
        HolderMessages();
    }

    int SrvId => _state.SrvId;

    // ---- IServerSurroundings: what the state reads ----------------------------------------------

    bool IServerSurroundings.RemoteBroken => _remote is null || _remote.Conn.IsBroken;
    bool IServerSurroundings.RoomToReadAhead => _deps.Stages.HasRoomToReadAhead;
    BacklogView? IServerSurroundings.Backlog =>
        _spool is { } s ? new BacklogView(s.Count, s.Bytes, s.OldestUtc, _deps.Spool!.Directory, s.NewestUtc) : null;
    CachedServer? IServerSurroundings.Saved => _saved;
    DateTime? IServerSurroundings.OldestElsewhere => _holders.OldestElsewhere;

    // ---- behaviours, one per phase (each its own messages first, then the common ones) ----------

    void Loading()
    {
        Receive<RetryRead>(_ => Perform(_state.RetryRowRead()));
        Common();
    }

    void Connecting()
    {
        Receive<ConnectGranted>(m => Perform(_state.ConnectGranted(m.Generation)));
        Common();
    }

    void Restoring()
    {
        Receive<ScheduleRestored>(m => Perform(_state.Restored(m.Last, m.Plan, m.Error)));
        Common();
    }

    void Collecting()
    {
        Receive<Tick>(m => Perform(_state.Tick(m.Generation)));
        Common();
    }

    void Waiting()
    {
        Receive<Reconnect>(_ => Perform(_state.Reconnect()));
        Common();
    }

    /// <summary>Stopping: what was read is stored (or handed to the writers) first; nothing new is read.</summary>
    void Stopping() => Common();

    void Common()
    {
        Receive<EnsureCollecting>(OnEnsure);
        Receive<ServerRead>(m =>
        {
            if (m.Error is not null) ListenForHolders(); // the repository is down: other nodes may be spooling this server
            Perform(_state.RowRead(m.Row, m.Error, m.RepositoryPowa));
            if (_holders.Any) AfterHolders(SrvId);
        });
        Receive<GetServerStatus>(_ => Sender.Tell(_state.Status(_node)));
        Receive<ForceSnapshot>(m =>
        {
            var (answer, actions) = _state.Force();
            Sender.Tell(new ForceSnapshotResult(m.SrvId, answer.Started, answer.Message));
            Perform(actions);
        });
        Receive<RefreshCatalogs>(m =>
        {
            var (answer, actions) = _state.RefreshCatalogs(m.DbNames);
            Sender.Tell(new RefreshCatalogsResult(m.SrvId, answer.Registered, answer.Message));
            Perform(actions);
        });
        // A connection's answers in every phase: one given up (the row changed meanwhile) is closed, its slot given back.
        Receive<ConnectGranted>(m => Perform(_state.ConnectGranted(m.Generation)));
        Receive<Connected>(OnConnected);
        Receive<ConnectFailed>(m => Perform(_state.ConnectFailed(m.Generation, m.Error, m.Setup)));
        // A snapshot's read and its store are answered in every phase: the queue is stored through a reconnection.
        Receive<SnapshotRead>(OnRead);
        Receive<SnapshotReadFailed>(m => Perform(_state.ReadFailed(m.Sequence, m.Error)));
        Receive<SnapshotStored>(m =>
        {
            Perform(_state.Stored(m.Sequence, m.Result, m.Replayed?.Sequence));
            if (_holders.Any) AfterHolders(SrvId); // its own stored up to another node's oldest: that node's turn
        });
        Receive<SnapshotNotStored>(m => Perform(_state.NotStored(m.Sequence, m.Error, m.Spooled, m.Replayed?.TakenAtUtc, m.SpoolError)));
        Receive<StoreWatchdog>(m => Perform(_state.StoreTimedOut(m.Sequence)));
        Receive<QueueSpooled>(m =>
        {
            foreach (var (seq, stage) in m.Left) _stages[seq] = stage; // back in memory
            Perform(_state.QueueSpooled(m.Written, m.Error));
        });
        Receive<ErrorsReported>(m => _state.ErrorsReported(m.Sequence));
        Receive<StopCollecting>(_ => Perform(_state.StopCollecting("the server was removed or deactivated")));
        Receive<StopEntity>(_ => Perform(_state.HandOff()));
        Receive<HandOffDeadline>(_ => Perform(_state.HandOffDeadline()));
        Receive<LeaseCheck>(_ => Perform(_state.LeaseCheck()));
        Receive<CachedServerFound>(m => _saved = m.Server);
        HolderMessages();
    }

    /// <summary>Other nodes' backlogs of this server, in every phase (an entity may hear of them before it starts).</summary>
    void HolderMessages()
    {
        Receive<BacklogHeld>(OnBacklogHeld);
        Receive<BacklogDrained>(OnBacklogDrained);
        Receive<HoldersExpire>(_ => ExpireHolders());
        Receive<HoldersHeard>(_ =>
        {
            _holders.Listened();
            AfterHolders(SrvId);
        });
    }

    // ---- other nodes' backlogs of this server (BacklogHeld; what to do: BacklogHolders) -----------------

    void OnBacklogHeld(BacklogHeld m)
    {
        if (m.Holder == _node || _deps.Spool is not { Usable: true }) return; // its own node's; or nowhere to keep its own meanwhile
        ListenForHolders(); // one node holds some: others may too, and each says so within a sweep
        if (_holders.Heard(m.Holder, m.OldestUtc, Sender))
            _log.Info("Server {0}: node {1} holds {2} spooled snapshots of it (the oldest taken at {3:HH:mm:ss} UTC): " +
                      "this server's snapshots are stored oldest first, whichever node holds them", m.SrvId, m.Holder, m.Snapshots, m.OldestUtc);
        if (!Timers.IsTimerActive("holders")) Timers.StartPeriodicTimer("holders", HoldersExpire.Instance, BacklogHolders<IActorRef>.Silence);
        AfterHolders(m.SrvId);
    }

    /// <summary>
    /// This server's snapshots were spooled (here, or the repository is down now, or another node says it holds
    /// some): other nodes may hold some too, and each says so within a sweep (10 s). Until then this entity stores
    /// nothing, so that an older backlog elsewhere is not dropped by the fence because newer snapshots went first.
    /// </summary>
    void ListenForHolders()
    {
        if (NodeCluster.Of(Context.System) is not { } cluster || cluster.State.Members.Count < 2
            || !Serialization.WireFormats.AllShareState(cluster.State.Members.Select(m => m.AppVersion))) return;
        if (_holders.Listen()) Timers.StartSingleTimer("listen", HoldersHeard.Instance, BacklogHolders<IActorRef>.ListenFor);
    }

    void OnBacklogDrained(BacklogDrained m)
    {
        if (!_holders.Drained(m.Holder)) return;
        _log.Info("Server {0}: node {1} has stored its older snapshots", m.SrvId, m.Holder);
        AfterHolders(m.SrvId);
    }

    void ExpireHolders()
    {
        foreach (var holder in _holders.Expire())
            _log.Warning("Server {0}: no word for {1:F0} s from node {2}, which held older snapshots of it: storing its own " +
                         "(what that node may still hold is older than them, and would be dropped)", SrvId, BacklogHolders<IActorRef>.Silence.TotalSeconds, holder);
        AfterHolders(SrvId);
    }

    /// <summary>The holder whose turn it is stores (not before this entity knows its own spool: it is claimed at start); then its own, if they are the oldest.</summary>
    void AfterHolders(int srvid)
    {
        if (!_holders.Any) Timers.Cancel("holders");
        if (_state.Phase == ServerPhase.New) return;
        if (_holders.Turn(_state.OldestOwnUtc) is { } turn) turn.Keeper.Tell(new BacklogTurn(SrvId > 0 ? SrvId : srvid, turn.UntilUtc));
        Perform(_state.BacklogElsewhereGone());
    }

    void OnEnsure(EnsureCollecting m) => Perform(_state.Ensure(m.SrvId, m.RowVersion, m.Refresh));

    void OnConnected(Connected m)
    {
        var actions = _state.Connected(m.Generation);
        if (actions.OfType<Restore>().Any()) _remote = new Link(new RemoteConnection(m.Conn), m.Versions);
        else m.Conn.Dispose(); // nobody to take it
        Perform(actions);
    }

    void OnRead(SnapshotRead m)
    {
        _metrics.SnapshotDuration.Record(m.Duration.TotalSeconds, new KeyValuePair<string, object?>("phase", "read"));
        _stages[m.Sequence] = m.Stage;
        var detail = $" in {m.Duration.TotalMilliseconds:F0} ms, {m.Stage.Length} bytes{(m.Stage.Spilled ? " (partly in a file)" : "")}";
        Perform(_state.Read(m.Sequence, m.Stage.TakenAtUtc, m.Stage.FailedSteps.ToHashSet(), m.Spooled is not null, m.SpoolError, detail));
    }

    // ---- effects ---------------------------------------------------------------------------------

    void Perform(IReadOnlyList<ServerAction> actions)
    {
        foreach (var action in actions) Perform(action);
        if (_state.RepositoryPlan is { } plan && !ReferenceEquals(plan, _planShared) && (_planShared is null || !plan.SameAs(_planShared)))
            _deps.StateKeeper.Tell(new ServerPlanSeen(SrvId, plan, _state.LastTakenUtc));
        _planShared = _state.RepositoryPlan;
        if (_state.Phase == _behaviour) return;
        _behaviour = _state.Phase;
        Become(_behaviour switch
        {
            ServerPhase.Loading => Loading,
            ServerPhase.Connecting => Connecting,
            ServerPhase.Restoring => Restoring,
            ServerPhase.Collecting => Collecting,
            ServerPhase.Waiting => Waiting,
            _ => Stopping, // Stopped: Context.Stop is under way
        });
    }

    void Perform(ServerAction action)
    {
        var s = _deps.Settings;
        switch (action)
        {
            case ClaimSpool: Claim(); break;
            case StartLease: Timers.StartPeriodicTimer("lease", LeaseCheck.Instance, s.ResyncInterval); break;
            case ReadRow: _deps.Writers.Tell(new ReadServer(SrvId, Self)); break;
            case RetryRowRead r: Timers.StartSingleTimer("read-row", RetryRead.Instance, r.After); break;
            case AskToConnect c:
                // The node's ConnectRamp paces the connections of a batch of servers (a cold start, a failover).
                if (_deps.Ramp.IsNobody()) Self.Tell(new ConnectGranted(c.Generation));
                else _deps.Ramp.Tell(new RequestConnect(SrvId, c.Generation, c.Frequency));
                break;
            case Open o: Open(o); break;
            case ConnectDone d: if (!_deps.Ramp.IsNobody()) _deps.Ramp.Tell(new ConnectFinished(d.Generation)); break;
            case Restore:
                _deps.StateKeeper.Tell(new CachedServerWanted(SrvId)); // answered before the repository: it is local
                _deps.Writers.Tell(new RestoreSchedule(SrvId, _remote!.Versions, Self));
                break;
            case CloseRemote: Close(); break;
            case ScheduleReconnect r: Timers.StartSingleTimer("reconnect", Reconnect.Instance, r.After); break;
            case CancelReconnect: Timers.Cancel("reconnect"); break;
            case ScheduleTick t: _clock.At(t.DueUtc, Self, new Tick(t.Generation)); break;
            case Read r: StartRun(r); break;
            case Store st:
                _deps.Writers.Tell(new StoreSnapshot(Take(st.Sequence), st.Sequence, Self, _spool));
                Watch(st.Sequence);
                break;
            case Replay r:
                if (_spool?.TakeOldest() is { } entry)
                {
                    _deps.Writers.Tell(new StoreSnapshot(null, r.Sequence, Self, _spool, entry));
                    Watch(r.Sequence);
                }
                else Perform(_state.ReplayNotTaken(r.Sequence)); // the node's keeper is storing it
                break;
            case HandOver h:
                foreach (var seq in h.Sequences) _deps.Writers.Tell(new StoreSnapshot(Take(seq), seq, ActorRefs.Nobody, _spool));
                if (SrvId > 0) _deps.Keeper.Tell(new LeftToWriters(SrvId, h.OldestUtc, h.Left));
                break;
            case ServerDo.SpoolQueue q: SpoolQueue(q.Sequences); break;
            case DropStages d:
                foreach (var seq in d.Sequences) Take(seq).Dispose();
                break;
            case CancelWatchdog: Timers.Cancel("store-watchdog"); break;
            case Report r: _deps.Writers.Tell(new ReportErrors(SrvId, [r.Error], r.SeenSequence, Self)); break;
            case ServerDo.SaveVersions: if (_remote is { } link) _deps.Writers.Tell(new SaveVersions(SrvId, link.Versions)); break;
            case StartHandOffDeadline h: Timers.StartSingleTimer("hand-off", HandOffDeadline.Instance, h.After); break;
            case Track t: _metrics.Track(SrvId, t.Alias, _state.Record); break;
            case Count c: _metrics.Snapshots.Add(c.N, CollectorMetrics.ServerTags(SrvId, _state.Config?.Alias, c.Outcome)); break;
            case CountConnectFailure: _metrics.RemoteConnectFailures.Add(1, CollectorMetrics.ServerTags(SrvId, _state.Config?.Alias)); break;
            case Say say: Log(say); break;
            case Stop: Context.Stop(Self); break;
            default: throw new InvalidOperationException($"no effect for {action}");
        }
    }

    void Log(Say say)
    {
        switch (say.Level)
        {
            case NoteLevel.Debug: _log.Debug("{0}", say.Text); break;
            case NoteLevel.Info: _log.Info("{0}", say.Text); break;
            case NoteLevel.Warning: _log.Warning("{0}", say.Text); break;
            default: _log.Error("{0}", say.Text); break;
        }
    }

    /// <summary>This server's spool on this node: replayed by this entity from now on (the node's SpoolKeeper leaves it).</summary>
    void Claim()
    {
        _deps.StateKeeper.Tell(new CachedServerWanted(SrvId));
        if (_deps.Spool is not { Usable: true } node || _spool is not null) return;
        _spool = node.For(SrvId);
        _deps.Keeper.Tell(new BacklogClaimed(SrvId, true));
        _state.Record.Backlog = _spool;
        if (_spool.Count > 0) ListenForHolders();
        if (_spool.Count > 0)
            _log.Info("Server {0}: {1} snapshots spooled on this node ({2:F1} MB, the oldest taken at {3:yyyy-MM-dd HH:mm:ss} UTC) are replayed before its next one",
                SrvId, _spool.Count, _spool.Bytes / 1048576.0, _spool.OldestUtc);
    }

    /// <summary>Opens the remote connection (and checks powa on it): Connected or ConnectFailed.</summary>
    void Open(Open o)
    {
        var s = _deps.Settings;
        var csb = _state.Config!.ToConnectionString(s);
        var (life, gen) = (_life.Token, o.Generation);
        // A remote transaction waits for nothing but the remote; one left by a collector that died ends after a while.
        RemoteQueries.ConnectAsync(csb, SrvId, o.RepositoryPowa, s.ConnectTimeout + s.RemoteTimeout,
                s.RemoteTimeout + s.RemoteTimeout + TimeSpan.FromSeconds(30))
            .ContinueWith(t =>
            {
                if (t.IsCompletedSuccessfully && life.IsCancellationRequested) t.Result.Conn.Dispose(); // nobody to take it
                return t;
            }, TaskScheduler.Default).Unwrap()
            .PipeTo(Self, success: r => new Connected(gen, r.Conn, r.Versions),
                failure: e => e is RemoteSetupException ? new ConnectFailed(gen, e.Message, Setup: true)
                    : new ConnectFailed(gen, $"cannot connect to {Dsn.Describe(csb)}: {PgSession.Describe(e)}"));
    }

    void StartRun(Read r)
    {
        var (s, cfg, link) = (_deps.Settings, _state.Config!, _remote!);
        var stage = new SnapshotStage(SrvId, cfg.Name, _deps.Stages)
        {
            ServerVersionNum = link.Versions.ServerVersionNum,
            Forced = r.Forced,
        };
        var job = new SnapshotJob(r.Plan, link.Versions.Schemas, r.Guarded, r.Refresh, cfg, s.RemoteTimeout, s.ConnectTimeout, s.RemoteSecurity, _metrics);
        // To the spool (the repository is down, older snapshots wait there, or the queue is full): on the disk
        // before the remote's cleanup runs.
        Context.ActorOf(SnapshotRun.Props(link.Conn, stage, job, r.ToSpool ? _spool : null, r.Sequence), $"run-{r.Sequence}");
    }

    void Watch(long sequence) => Timers.StartSingleTimer("store-watchdog", new StoreWatchdog(sequence),
        _deps.Settings.RepositoryTimeout * 2 + TimeSpan.FromMinutes(1));

    SnapshotStage Take(long sequence)
    {
        _stages.Remove(sequence, out var stage);
        return stage ?? throw new InvalidOperationException($"server {SrvId}: no stage for snapshot {sequence}");
    }

    /// <summary>
    /// The repository just went down: the snapshots read before and waiting in memory go to the spool as well
    /// (off the actor's thread; the task owns their stages until QueueSpooled), so that a crash of the node
    /// during the outage loses none of them.
    /// </summary>
    void SpoolQueue(IReadOnlyList<long> sequences)
    {
        var staged = sequences.Select(seq => (seq, Take(seq))).ToList();
        var spool = _spool!;
        Task.Run(async () =>
        {
            for (var i = 0; i < staged.Count; i++)
            {
                try { await spool.WriteAsync(staged[i].Item2, staged[i].seq, CancellationToken.None).ConfigureAwait(false); }
                catch (SpoolException e) { return new QueueSpooled(i, staged.Skip(i).ToList(), e.Message); }
                staged[i].Item2.Dispose();
            }
            return new QueueSpooled(staged.Count, [], null);
        }).PipeTo(Self);
    }

    void Close()
    {
        _remote?.Conn.Close();
        _remote = null;
        _clock.Dispose();
    }

    protected override void PostStop()
    {
        _life.Cancel();
        foreach (var stage in _stages.Values) stage.Dispose();
        _stages.Clear();
        if (_spool is not null) _deps.Keeper.Tell(new BacklogClaimed(SrvId, false)); // what is left there, the keeper replays
        _metrics.Untrack(_state.Record);
        // When its last snapshot was taken, for the node that takes it over (it may not be stored yet).
        if (SrvId > 0 && _state.LastTakenUtc is { } taken) _deps.StateKeeper.Tell(new ServerPlanSeen(SrvId, null, taken));
        // Sharding starts the server again only when a message comes for it: the coordinator sends it at once
        // (docs/architecture.md, ServerCollector and ServerState).
        if (_state.HandedOff && SrvId > 0) _deps.Coordinator.Tell(new ServerHandedOff(SrvId));
        Close();
    }

    public static Props Props(CollectorSettings settings, PowaVersion repositoryPowa, IActorRef writers, StageBudget stages,
        IActorRef? coordinator = null, IActorRef? ramp = null, SnapshotSpool? spool = null, IActorRef? keeper = null, IActorRef? stateKeeper = null)
    {
        var deps = new Deps(settings, repositoryPowa, writers, stages, coordinator ?? ActorRefs.Nobody, ramp ?? ActorRefs.Nobody, spool,
            keeper ?? ActorRefs.Nobody, stateKeeper ?? ActorRefs.Nobody);
        return Akka.Actor.Props.Create(() => new ServerCollector(deps));
    }

    sealed record HoldersHeard
    {
        public static readonly HoldersHeard Instance = new();
    }

    sealed record HoldersExpire
    {
        public static readonly HoldersExpire Instance = new();
    }
}
