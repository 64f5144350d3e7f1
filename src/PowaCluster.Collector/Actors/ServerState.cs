using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Postgres;
using PowaCluster.Collector.Scheduling;
using PowaCluster.Collector.Spooling;
using static PowaCluster.Collector.Actors.ServerDo;

namespace PowaCluster.Collector.Actors;

/// <summary>What a ServerState reads of the world around it, without changing it (the actor's, or a test's fake).</summary>
public interface IServerSurroundings
{
    /// <summary>The remote connection failed under a read (a new read would fail at once).</summary>
    bool RemoteBroken { get; }
    /// <summary>The node's stage memory, or its stage files, have room for one more snapshot read ahead.</summary>
    bool RoomToReadAhead { get; }
    /// <summary>This server's spool on this node, once claimed; null when the node has no usable spool.</summary>
    BacklogView? Backlog { get; }
    /// <summary>What this node saved of the server (StateKeeper): to collect it while the repository is down.</summary>
    CachedServer? Saved { get; }
    /// <summary>
    /// The oldest snapshot of this server that another node holds spooled (BacklogHeld), null when none does:
    /// what this entity holds is stored only when it is older; until then its reads go to the spool.
    /// </summary>
    DateTime? OldestElsewhere { get; }
}

/// <summary>A server's spooled snapshots, as the state needs to see them.</summary>
public sealed record BacklogView(int Count, long Bytes, DateTime? OldestUtc, string Directory, DateTime? NewestUtc = null);

/// <summary>
/// One server's collection, decided: a plain class, no Akka, no PostgreSQL. Each event method (a message the
/// entity received, its time from the TimeProvider) updates the state and returns what to do, as
/// ServerActions. How the phases follow each other, and why, is in docs/architecture.md
/// (its ServerCollector section); <see cref="Allowed"/> is the table, and a move outside it throws. What
/// becomes of a snapshot once read (queue, writer, spool, hand-over) is <see cref="SnapshotDelivery"/>'s.
/// </summary>
public sealed class ServerState
{
    public ServerState(CollectorSettings settings, PowaVersion repositoryPowa, IServerSurroundings world, TimeProvider time, Func<double> random)
    {
        (_settings, RepositoryPowa, _world, _time, _random) = (settings, repositoryPowa, world, time, random);
        Record = new ServerRecord(time.GetUtcNow().UtcDateTime);
        // What is read goes on to the delivery, which writes its actions to the same list as the state's.
        _delivery = new SnapshotDelivery(settings, world, Record, () => SrvId, _out.Add);
    }

    //   New ─► Loading ─► Connecting ─► Restoring ─► Collecting
    //             │          ▲   │           │          │
    //             │          │   ▼           ▼          ▼
    //             │          └─ Waiting ◄────┴──────────┘        (a failure: back off, connect again)
    //             ▼
    //   any ─► Stopping (a snapshot read or stored still to finish) ─► Stopped
    static readonly Dictionary<ServerPhase, ServerPhase[]> Moves = new()
    {
        [ServerPhase.New] = [ServerPhase.Loading, ServerPhase.Stopped],
        [ServerPhase.Loading] = [ServerPhase.Connecting, ServerPhase.Waiting, ServerPhase.Stopping, ServerPhase.Stopped],
        [ServerPhase.Connecting] = [ServerPhase.Connecting, ServerPhase.Restoring, ServerPhase.Waiting, ServerPhase.Stopping, ServerPhase.Stopped],
        [ServerPhase.Restoring] = [ServerPhase.Collecting, ServerPhase.Connecting, ServerPhase.Waiting, ServerPhase.Stopping, ServerPhase.Stopped],
        [ServerPhase.Collecting] = [ServerPhase.Connecting, ServerPhase.Waiting, ServerPhase.Stopping, ServerPhase.Stopped],
        [ServerPhase.Waiting] = [ServerPhase.Connecting, ServerPhase.Waiting, ServerPhase.Stopping, ServerPhase.Stopped],
        [ServerPhase.Stopping] = [ServerPhase.Stopped],
        [ServerPhase.Stopped] = [],
    };

    public static bool Allowed(ServerPhase from, ServerPhase to) => Moves[from].Contains(to);

    readonly List<ServerAction> _out = [];
    readonly CollectorSettings _settings;
    readonly IServerSurroundings _world;
    readonly TimeProvider _time;
    readonly Func<double> _random;
    readonly SnapshotDelivery _delivery;
    long? _reading;                              // the sequence of the snapshot being read
    CatalogRefresh? _refresh, _readingRefresh;   // REFRESH_DB_CAT asked for; the one the read in progress takes care of
    long _catalogSequence;                       // a snapshot read with the catalogs that are due, not stored yet (0: none)
    SnapshotPlan _plan = SnapshotPlan.Empty;
    IReadOnlySet<string> _guarded = new HashSet<string>();
    long _seenSequence = long.MinValue;
    int _skipped, _failures;
    DateTime? _dueUtc;                           // the pending tick's, while scheduled
    DateTime _lastStartUtc = DateTime.MinValue, _lastEnsureUtc;
    ServerConfig? _pendingConfig;                // a changed row that waits for the snapshot being read
    bool _readingRow, _refreshAfterRead;

    public ServerPhase Phase { get; private set; } = ServerPhase.New;
    public int SrvId { get; private set; }
    public ServerConfig? Config { get; private set; }
    public string RowVersion { get; private set; } = "";
    public PowaVersion RepositoryPowa { get; private set; }
    /// <summary>Bumps on every connection attempt: answers and ticks of an older one are ignored.</summary>
    public int Generation { get; private set; }
    public bool HandedOff => _delivery.HandedOff;
    public ServerRecord Record { get; }
    /// <summary>Snapshots read and not stored yet: queued, and the one at a writer.</summary>
    public int Unstored => _delivery.Unstored;
    /// <summary>A snapshot is being read, waits for the repository, is being spooled or stored: a stop waits for it.</summary>
    public bool Busy => _reading is not null || _delivery.Busy;

    DateTime CurrentUtc => _time.GetUtcNow().UtcDateTime;
    TimeSpan Frequency => TimeSpan.FromSeconds(Config!.Frequency);
    bool CanQueue => _delivery.CanQueue;

    /// <summary>The plan the repository gave last (Restored, Stored), for the node's StateKeeper; null before.</summary>
    public SnapshotPlan? RepositoryPlan { get; private set; }

    /// <summary>When the last snapshot was taken here, if one was.</summary>
    public DateTime? LastTakenUtc => _lastStartUtc == DateTime.MinValue ? null : _lastStartUtc;

    // ---- events ----------------------------------------------------------------------------------

    /// <summary>The coordinator's EnsureCollecting: starts the entity, renews its lease, says when the row changed.</summary>
    public IReadOnlyList<ServerAction> Ensure(int srvId, string rowVersion, bool refresh) => Run(() =>
    {
        _lastEnsureUtc = CurrentUtc;
        if (Phase == ServerPhase.New)
        {
            (SrvId, RowVersion) = (srvId, rowVersion);
            Do(new ClaimSpool());
            Do(new StartLease());
            MoveTo(ServerPhase.Loading);
            ReadRow();
            return;
        }
        if (Phase is ServerPhase.Stopping or ServerPhase.Stopped) return;
        _refreshAfterRead |= refresh;
        // Without a row yet (its first read failed), every EnsureCollecting tries again.
        if (rowVersion != RowVersion || refresh || Config is null) ReadRow();
    });

    public IReadOnlyList<ServerAction> RetryRowRead() => Run(ReadRow);

    /// <summary>The server's powa_servers row, read (null: not active any more), or why it could not be.</summary>
    public IReadOnlyList<ServerAction> RowRead(ServerRow? row, string? error, string? repositoryPowa) => Run(() =>
    {
        _readingRow = false;
        if (Phase == ServerPhase.Loading) FirstRow(row, error, repositoryPowa);
        else RowAgain(row, error, repositoryPowa);
    });

    public IReadOnlyList<ServerAction> Reconnect() => Run(() =>
    {
        if (Phase == ServerPhase.Waiting) Connect();
    });

    public IReadOnlyList<ServerAction> ConnectGranted(int generation) => Run(() =>
    {
        if (Phase == ServerPhase.Connecting && generation == Generation) Do(new Open(generation, RepositoryPowa));
        else Do(new ConnectDone(generation)); // an attempt given up: its slot back
    });

    /// <summary>The remote connection is open and checked; without a Restore action the actor closes it.</summary>
    public IReadOnlyList<ServerAction> Connected(int generation) => Run(() =>
    {
        if (generation != Generation) return;
        Do(new ConnectDone(generation));
        if (Phase != ServerPhase.Connecting) return;
        Record.Status = CollectorStatus.Running;
        Say(NoteLevel.Info, $"Server {SrvId}: connected to {Config!.Name}");
        MoveTo(ServerPhase.Restoring);
        Do(new Restore());
    });

    /// <param name="setup">the remote cannot be collected as it is set up (no powa, another version)</param>
    public IReadOnlyList<ServerAction> ConnectFailed(int generation, string error, bool setup) => Run(() =>
    {
        if (generation != Generation) return;
        Do(new ConnectDone(generation));
        if (Phase != ServerPhase.Connecting) return;
        Do(new CountConnectFailure());
        Disconnected(CollectorStatus.NoRemote, error, report: true);
        // Another powa than the repository's: the repository's may have changed too (ALTER EXTENSION powa
        // UPDATE there while the remote waits for its own): read again before the next attempt.
        if (setup) ReadRow();
    });

    public IReadOnlyList<ServerAction> Restored(LastSnapshot? last, SnapshotPlan plan, string? error) => Run(() =>
    {
        if (Phase != ServerPhase.Restoring) return;
        if (last is null && _lastStartUtc != DateTime.MinValue)
        {
            // The repository cannot answer (an outage) and this server was collected here before: its remote
            // connection is back, so it goes on with the plan and schedule it had, into the spool, instead of
            // losing every interval until the repository returns.
            Say(NoteLevel.Warning, $"Server {SrvId}: reconnected, but the repository cannot give its schedule ({error}); " +
                                   "collecting with the plan it had until the repository is back");
            StartCollecting(_lastStartUtc);
            return;
        }
        if (last is null && _world.Saved?.Plan is { } savedPlan && _world.Backlog is not null)
        {
            // Started here during an outage (a restart, a moved shard): the plan and the last time taken that
            // the node saved, or another node shared, and what the spool holds.
            _plan = _catalogSequence != 0 ? savedPlan.WithoutCatalogs() : savedPlan;
            _delivery.StartInOutage();
            Record.Status = CollectorStatus.NoRepository;
            var lastKnown = Latest(_world.Saved.LastTakenUtc, _world.Backlog.NewestUtc);
            Say(NoteLevel.Warning, $"Server {SrvId}: the repository cannot give its schedule ({error}); collecting into the spool with the plan " +
                                   $"this node saved{(lastKnown is { } l ? $", the last snapshot taken at {l:HH:mm:ss} UTC" : "")}, until it is back");
            StartCollecting(lastKnown);
            return;
        }
        if (last is null || !last.Registered)
        {
            Disconnected(CollectorStatus.NoRepository, error ?? $"server {SrvId} is not correctly registered: it has no powa_snapshot_metas row",
                report: false, delay: last is null ? null : _settings.RetryMaxDelay);
            return;
        }
        Saw(last.Sequence);
        // The repository's plan, unless a snapshot read before this reconnection carries the catalogs and is not stored yet.
        _plan = _catalogSequence != 0 ? plan.WithoutCatalogs() : plan;
        RepositoryPlan = plan;
        Record.Restored(last.At);
        if (plan.IsEmpty) Say(NoteLevel.Info, $"No datasource configured for server {SrvId}");
        // A snapshot taken on the node that handed the server off may not be stored yet: its time, shared by that
        // node, keeps the schedule (the repository's snapts would make it look overdue).
        StartCollecting(Latest(last.At?.UtcDateTime, _world.Saved?.LastTakenUtc));
    });

    static DateTime? Latest(DateTime? a, DateTime? b) => a is null ? b : b is null ? a : a > b ? a : b;

    /// <summary>Restoring ends: the first snapshot is due from the last one (ServerSchedule.FirstDue).</summary>
    void StartCollecting(DateTime? lastUtc)
    {
        _failures = 0;
        _delivery.StoreNext(); // what the spool holds (a restart during an outage) is replayed first
        var due = ServerSchedule.FirstDue(lastUtc, Frequency, CurrentUtc, _random());
        Say(NoteLevel.Debug, $"Server {SrvId}: first snapshot in {(due - CurrentUtc).TotalSeconds:F1} s");
        ScheduleAt(due);
        MoveTo(ServerPhase.Collecting);
        Settle();
    }

    /// <summary>
    /// A snapshot is due. It is read, unless one is being read (the remote is slow) or the queue of snapshots
    /// waiting for the repository is full with no spool to go to; while the repository is down, the spool's
    /// oldest probes it.
    /// </summary>
    public IReadOnlyList<ServerAction> Tick(int generation) => Run(() =>
    {
        if (Phase != ServerPhase.Collecting || generation != Generation) return;
        ScheduleAt(ServerSchedule.NextDue(_dueUtc!.Value, Frequency, CurrentUtc));
        _delivery.Tick();
        if (_reading is not null) Skip("read");
        else if (!CanQueue && _world.Backlog is null) Skip("stored");
        else StartRead(); // with a full queue (a slow or hung repository), to the spool
    });

    // powa-collector 1.3.1's answers to FORCE_SNAPSHOT, word for word: powa-web 5 shows them.
    public const string InProgress = "A snapshot is already in progress";
    public const string TooSoon = "Last snapshot was less than 10s. ago";
    public const string Started = "Snapshot in progress";

    /// <summary>FORCE_SNAPSHOT: (started, the answer powa-web shows) and what to do.</summary>
    public ((bool Started, string Message) Answer, IReadOnlyList<ServerAction> Actions) Force()
    {
        (bool, string) answer = (false, "");
        var actions = Run(() =>
        {
            if (Phase != ServerPhase.Collecting || Busy) answer = (false, Refusal());
            else if (CurrentUtc - _lastStartUtc < TimeSpan.FromSeconds(10)) answer = (false, TooSoon);
            else
            {
                StartRead(forced: true);
                answer = _reading is not null ? (true, Started) : (false, Record.Describe(SrvId));
            }
        });
        return (answer, actions);
    }

    /// <summary>REFRESH_DB_CAT: (registered, the answer) and what to do.</summary>
    public ((bool Registered, string Message) Answer, IReadOnlyList<ServerAction> Actions) RefreshCatalogs(IReadOnlyList<string> dbNames)
    {
        if (Phase is ServerPhase.Stopping or ServerPhase.Stopped or ServerPhase.New) return ((false, $"server {SrvId} is stopping"), []);
        _refresh = CatalogRefresh.Merge(_refresh, new CatalogRefresh(dbNames.ToHashSet()));
        return ((true, "Catalogs will be refreshed during the next snapshot"),
            [new Say(NoteLevel.Info, $"Server {SrvId}: catalogs of {(dbNames.Count == 0 ? "every database" : string.Join(", ", dbNames))} to be refreshed during the next snapshot")]);
    }

    /// <param name="takenAtUtc">the stage's</param>
    /// <param name="failedSteps">the datasources that failed: a savepoint each next time</param>
    /// <param name="spooled">written to the spool (the stage can go)</param>
    /// <param name="spoolError">to be spooled, and could not be</param>
    public IReadOnlyList<ServerAction> Read(long sequence, DateTime takenAtUtc, IReadOnlySet<string> failedSteps, bool spooled,
        string? spoolError, string detail) => Run(() =>
    {
        if (sequence != _reading) return;
        _reading = null;
        _guarded = failedSteps;
        _delivery.Read(sequence, takenAtUtc, spooled, spoolError, detail);
        Settle();
    });

    public IReadOnlyList<ServerAction> ReadFailed(long sequence, string error) => Run(() =>
    {
        if (sequence != _reading) return;
        _reading = null;
        Do(new Count("read_failed"));
        if (_readingRefresh is not null) _refresh = CatalogRefresh.Merge(_refresh, _readingRefresh); // for the next snapshot
        if (_catalogSequence == sequence) _catalogSequence = 0; // the next stored plan says they are due
        Disconnected(CollectorStatus.NoRemote, error, report: true, snapshotLost: true);
    });

    /// <summary>The repository's answer to a store; <paramref name="replayedSequence"/>: the spooled snapshot's own, when it was one.</summary>
    public IReadOnlyList<ServerAction> Stored(long sequence, StoreResult result, long? replayedSequence) => Run(() =>
    {
        var replayed = replayedSequence is not null;
        if (!_delivery.Stored(sequence, result, replayed)) return;
        Saw(result.Sequence);
        Record.Stored(result, CurrentUtc);
        FollowRepositoryPowa(result.RepositoryPowa);
        if (result.Outcome == StoreOutcome.Skipped)
            Say(NoteLevel.Warning, $"Server {SrvId}: {(replayed ? "spooled " : "")}snapshot skipped: {result.SkipReason}");
        else if (result.Outcome == StoreOutcome.Rejected && replayed)
            Record.Error(CollectorStatus.Running, result.SkipReason!, snapshotLost: true); // the spool said which file, and why
        else if (result.Outcome is StoreOutcome.Refused or StoreOutcome.Rejected) Refused(result.SkipReason!, replayed);
        else
        {
            // The repository's plan for the next snapshot, without the catalogs while a later one carries them.
            if (_catalogSequence != 0 && _catalogSequence <= (replayedSequence ?? sequence)) _catalogSequence = 0;
            _plan = _catalogSequence != 0 ? result.Plan.WithoutCatalogs() : result.Plan;
            RepositoryPlan = result.Plan;
        }
        foreach (var e in result.Errors) Say(NoteLevel.Warning, $"Server {SrvId}: {e}");
        if (result.TakeSnapshotErrors != 0)
            Say(NoteLevel.Warning, $"powa_take_snapshot({SrvId}) reported {result.TakeSnapshotErrors} error(s); see the repository server's log");
        _delivery.StoreNext();
        Settle();
    });

    /// <param name="spooled">the repository failed, not the snapshot: it is in the spool</param>
    /// <param name="replayedTakenAtUtc">set when it was a spooled one</param>
    public IReadOnlyList<ServerAction> NotStored(long sequence, string error, bool spooled, DateTime? replayedTakenAtUtc, string? spoolError) => Run(() =>
    {
        var what = _delivery.NotStored(sequence, error, spooled, replayedTakenAtUtc, spoolError, stopping: Phase == ServerPhase.Stopping);
        if (what == SnapshotDelivery.NotStoredAs.NotOurs) return;
        if (what == SnapshotDelivery.NotStoredAs.Lost && _catalogSequence == sequence) _catalogSequence = 0; // the next stored plan says they are due
        Settle();
    });

    public IReadOnlyList<ServerAction> StoreTimedOut(long sequence) =>
        NotStored(sequence, "the repository did not answer in time", spooled: false, null, null);

    /// <summary>The spool's oldest could not be taken (the node's keeper is storing it): the next tick tries again.</summary>
    public IReadOnlyList<ServerAction> ReplayNotTaken(long sequence) => Run(() => _delivery.ReplayNotTaken(sequence));

    /// <summary>The queue went to the spool: the first <paramref name="written"/> are there; the rest, back in memory.</summary>
    public IReadOnlyList<ServerAction> QueueSpooled(int written, string? error) => Run(() =>
    {
        _delivery.QueueSpooled(written, error);
        Settle();
    });

    /// <summary>The writer wrote the server's errors, or found a newer snapshot's (Sequence: its coalesce_seq then).</summary>
    public void ErrorsReported(long? sequence) => Saw(sequence);

    public IReadOnlyList<ServerAction> StopCollecting(string why) => Run(() => RequestStop(why));

    /// <summary>
    /// The shard moves (a rebalance, a node that stops): what was read goes to the node's writers at once, a
    /// snapshot being read gets half the hand-off timeout to finish, and the entity stops well within the
    /// hand-off timeout whatever the remote or the repository does.
    /// </summary>
    public IReadOnlyList<ServerAction> HandOff() => Run(() =>
    {
        if (HandedOff || Phase is ServerPhase.Stopped) return;
        _delivery.HandOff();
        RequestStop("its shard is handed off to another node");
        if (_reading is not null) Do(new StartHandOffDeadline(_settings.HandOffTimeout / 2));
    });

    public IReadOnlyList<ServerAction> HandOffDeadline() => Run(() =>
    {
        if (Phase == ServerPhase.Stopped) return;
        Say(NoteLevel.Warning, $"Server {SrvId}: its snapshot is still being read {(_settings.HandOffTimeout / 2).TotalSeconds:F0} s after its shard was handed off: given up, the server goes on on its new node");
        MoveTo(ServerPhase.Stopped);
        Do(new Stop());
    });

    /// <summary>The older backlog another node held is stored, or that node is gone: this server's own goes on.</summary>
    public IReadOnlyList<ServerAction> BacklogElsewhereGone() => Run(() => _delivery.StoreNext());

    /// <inheritdoc cref="SnapshotDelivery.OldestOwnUtc"/>
    public DateTime? OldestOwnUtc => _delivery.OldestOwnUtc;

    /// <inheritdoc cref="SnapshotDelivery.YieldsTo"/>
    public bool YieldsTo(DateTime oldestUtc) => _delivery.YieldsTo(oldestUtc);

    public IReadOnlyList<ServerAction> LeaseCheck() => Run(() =>
    {
        var lease = _settings.ResyncInterval * _settings.EntityLeaseIntervals;
        if (CurrentUtc - _lastEnsureUtc > lease) RequestStop($"no word from the coordinator for {lease.TotalSeconds:F0} s");
    });

    public ServerStatus Status(string? node) => Phase == ServerPhase.New
        ? new ServerStatus(SrvId, CollectorStatus.Stopped, node, null, null, 0, 0)
        : Record.ToStatus(SrvId, node, Phase == ServerPhase.Stopping, _world.Backlog);

    // ---- decisions ---------------------------------------------------------------------------------

    void FirstRow(ServerRow? row, string? error, string? repositoryPowa)
    {
        if (error is not null && _world.Saved?.Row is { } saved)
        {
            // The repository is down (a restart, or a move of the shard, during an outage): the row this node
            // saved lets it collect into the spool; the row is read again at the next EnsureCollecting that differs.
            Say(NoteLevel.Warning, $"Server {SrvId}: cannot read its powa_servers row ({error}); collecting with the row this node saved");
            row = saved;
            error = null;
        }
        if (error is not null)
        {
            _failures++;
            Record.Error(CollectorStatus.NoRepository, error, snapshotLost: false);
            var wait = ServerSchedule.Backoff(_failures, _settings.RetryMinDelay, _settings.RetryMaxDelay, _random());
            Say(NoteLevel.Warning, $"Server {SrvId}: cannot read its powa_servers row: {error}; retrying in {wait.TotalSeconds:F0} s");
            Do(new RetryRowRead(wait));
            return;
        }
        if (row is null)
        {
            Say(NoteLevel.Info, $"Server {SrvId} is not active in powa_servers (removed or deactivated): not collecting it");
            MoveTo(ServerPhase.Stopped);
            Do(new Stop());
            return;
        }
        _failures = 0;
        FollowRepositoryPowa(repositoryPowa);
        (Config, RowVersion) = (row.Config, row.RowVersion);
        Do(new Track(Config.Alias));
        Say(NoteLevel.Info, $"Starting to collect server {SrvId} ({ServerConfig.Shown(Config.Name)}) every {Config.Frequency} s");
        Connect();
    }

    /// <summary>The row read again (it changed, or RELOAD): apply it, then RELOAD's own work.</summary>
    void RowAgain(ServerRow? row, string? error, string? repositoryPowa)
    {
        var refresh = _refreshAfterRead;
        _refreshAfterRead = false;
        if (Phase is ServerPhase.Stopping or ServerPhase.Stopped) return;
        if (error is not null)
        {
            // Go on with the row we have; the next EnsureCollecting asks again (the version we know is unchanged).
            Say(NoteLevel.Warning, $"Server {SrvId}: cannot read its powa_servers row again: {error}");
            return;
        }
        if (row is null)
        {
            RequestStop("it is no longer active in powa_servers");
            return;
        }
        RowVersion = row.RowVersion;
        FollowRepositoryPowa(repositoryPowa);
        if (row.Config != Config)
        {
            if (_reading is not null) _pendingConfig = row.Config; // applied once the read is over
            else if (ApplyConfig(row.Config)) return;
        }
        if (!refresh) return;
        // RELOAD: a server waiting to reconnect tries now; a connected one saves its versions again.
        if (Phase == ServerPhase.Waiting)
        {
            _failures = 0;
            Connect();
        }
        else if (Phase is ServerPhase.Restoring or ServerPhase.Collecting) Do(new ServerDo.SaveVersions());
    }

    /// <summary>Applies a changed powa_servers row; true when it reconnects.</summary>
    bool ApplyConfig(ServerConfig cfg)
    {
        var old = Config!;
        Config = cfg;
        if (old.Alias != cfg.Alias) Do(new Track(cfg.Alias));
        // A row that cannot be collected (a frequency no timer can wait, among others): Connect says why.
        var loopback = _settings.ClusterOnLoopback;
        if (old.ConnectionDiffers(cfg) || (cfg.Problem(loopback) is not null && old.Problem(loopback) is null))
        {
            if (old.ConnectionDiffers(cfg))
                Say(NoteLevel.Info, $"Server {cfg.SrvId}: connection settings changed ({ServerConfig.Shown(old.Name)} -> {ServerConfig.Shown(cfg.Name)}), reconnecting");
            CloseRemote();
            _failures = 0;
            Connect();
            return true;
        }
        if (old.Frequency != cfg.Frequency && _dueUtc is not null)
        {
            Say(NoteLevel.Info, $"Server {cfg.SrvId}: frequency changed from {old.Frequency} s to {cfg.Frequency} s");
            var next = (Record.LastSnapshot?.UtcDateTime ?? CurrentUtc) + Frequency;
            ScheduleAt(next > CurrentUtc ? next : CurrentUtc);
        }
        return false;
    }

    void Connect()
    {
        if (Config!.Problem(_settings.ClusterOnLoopback) is { } problem)
        {
            // Not a row to connect with (a socket path, a host list): said in powa_snapshot_metas.errors and the
            // log, tried again after the longest backoff, and at once when the row changes.
            Disconnected(CollectorStatus.NoRemote, problem, report: true, delay: _settings.RetryMaxDelay);
            return;
        }
        Generation++;
        Do(new CancelReconnect());
        MoveTo(ServerPhase.Connecting);
        Do(new AskToConnect(Generation, Frequency));
    }

    /// <summary>No usable remote connection: report, back off, connect again (or, stopping, stop once idle).</summary>
    void Disconnected(string status, string error, bool report, TimeSpan? delay = null, bool snapshotLost = false)
    {
        CloseRemote();
        _failures++;
        Record.Error(status, error, snapshotLost);
        if (Phase == ServerPhase.Stopping)
        {
            Settle(); // snapshots read before are still stored
            return;
        }
        var wait = delay ?? ServerSchedule.Backoff(_failures, _settings.RetryMinDelay, _settings.RetryMaxDelay, _random());
        Say(NoteLevel.Warning, $"Server {SrvId}: {error}; retrying in {wait.TotalSeconds:F0} s");
        if (report) Do(new Report(error, _seenSequence == long.MinValue ? null : _seenSequence));
        Do(new ScheduleReconnect(wait));
        MoveTo(ServerPhase.Waiting);
    }

    void CloseRemote()
    {
        Do(new ServerDo.CloseRemote());
        _dueUtc = null;
        _skipped = 0; // the ticks of this connection: a new one gets a schedule of its own
    }

    void ScheduleAt(DateTime dueUtc)
    {
        _dueUtc = dueUtc;
        Do(new ScheduleTick(dueUtc, Generation));
    }

    void StartRead(bool forced = false)
    {
        if (_world.RemoteBroken)
        {
            Disconnected(CollectorStatus.NoRemote, "the remote connection was lost", report: false, delay: TimeSpan.Zero);
            return;
        }
        if (_skipped > 1) Say(NoteLevel.Info, $"Server {SrvId}: back on schedule after {_skipped} skipped snapshots");
        _skipped = 0;
        _lastStartUtc = CurrentUtc;
        var seq = _delivery.NextSequence();
        var read = new Read(seq, forced, _delivery.Spooling || !CanQueue, _plan, _guarded, _refresh);
        (_readingRefresh, _refresh) = (_refresh, null);
        if (_plan.HasCatalogs || read.Refresh is not null)
        {
            // This one reads the catalogs that are due: the next ones do not, until it is stored.
            _catalogSequence = seq;
            _plan = _plan.WithoutCatalogs();
        }
        _reading = seq;
        Do(read);
    }

    /// <summary>A tick while the previous snapshot is still being read, or with a full queue: skipped. Logged once a row.</summary>
    void Skip(string phase)
    {
        var text = phase == "read"
            ? $"Server {SrvId}: the previous snapshot is still being read after {(CurrentUtc - _lastStartUtc).TotalSeconds:F0} s; this one is skipped"
            : $"Server {SrvId}: {Unstored} snapshots wait for the repository; this one is skipped";
        Say(_skipped++ == 0 ? NoteLevel.Warning : NoteLevel.Debug, text);
    }

    /// <summary>
    /// After a read or a store: a stop or a row change that waited goes ahead, and a tick skipped while a
    /// snapshot was being read (a slow remote) or while the queue was full is caught up now, as the reference
    /// does after a long snapshot, unless the next is due within half an interval: two snapshots are never
    /// taken less than half an interval apart by catching up.
    /// </summary>
    void Settle()
    {
        if (Phase == ServerPhase.Stopping)
        {
            if (!Busy) Finish();
            return;
        }
        if (_reading is null && _pendingConfig is { } pending)
        {
            _pendingConfig = null;
            if (ApplyConfig(pending)) return;
        }
        if (Phase == ServerPhase.Collecting && _skipped > 0 && _reading is null && CanQueue && _dueUtc - CurrentUtc > Frequency / 2) StartRead();
    }

    /// <summary>
    /// The repository refused a snapshot: the remote's powa and its own differ (one side was updated), or the
    /// remote sent rows of another server. Nothing of it was stored; the connection is opened again, whose
    /// check says the same until both sides match.
    /// </summary>
    void Refused(string reason, bool replayed)
    {
        Record.Error(CollectorStatus.NoRemote, reason, snapshotLost: true);
        if (Phase is ServerPhase.Restoring or ServerPhase.Collecting) Disconnected(CollectorStatus.NoRemote, reason, report: true);
        else Say(NoteLevel.Debug, $"Server {SrvId}: {(replayed ? "spooled " : "")}snapshot refused: {reason}");
    }

    /// <summary>An ALTER EXTENSION powa UPDATE on the repository is followed with no restart.</summary>
    void FollowRepositoryPowa(string? text)
    {
        if (PowaVersion.Parse(text) is not { } now || now.Text == RepositoryPowa.Text) return;
        Say(NoteLevel.Info, $"Server {SrvId}: the repository's powa is {now} now (was {RepositoryPowa})");
        RepositoryPowa = now;
    }

    /// <summary>Stops now, or once what is being read or stored is done; nothing new is read meanwhile.</summary>
    void RequestStop(string why)
    {
        if (Phase is ServerPhase.Stopping or ServerPhase.Stopped) return;
        if (Phase != ServerPhase.New) Say(NoteLevel.Info, $"Stopping collection of server {SrvId}: {why}");
        if (Busy) MoveTo(ServerPhase.Stopping);
        else Finish();
    }

    void Finish()
    {
        MoveTo(ServerPhase.Stopped);
        Do(new Stop());
    }

    void ReadRow()
    {
        if (_readingRow) return;
        _readingRow = true;
        Do(new ServerDo.ReadRow());
    }

    void Saw(long? sequence)
    {
        if (sequence > _seenSequence) _seenSequence = sequence.Value;
    }

    string Refusal() =>
        Phase == ServerPhase.Stopping ? $"server {SrvId} is stopping" : Busy ? InProgress : Record.Describe(SrvId);

    void MoveTo(ServerPhase to)
    {
        if (!Allowed(Phase, to)) throw new InvalidOperationException($"server {SrvId}: {Phase} -> {to} is not a move of a server entity");
        Phase = to;
    }

    void Do(ServerAction action) => _out.Add(action);

    void Say(NoteLevel level, string text) => _out.Add(new Say(level, text));

    IReadOnlyList<ServerAction> Run(Action decide)
    {
        _out.Clear();
        decide();
        return _out.ToArray();
    }
}
