using Akka.Actor;
using Akka.Cluster;
using Akka.Event;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Control;
using PowaCluster.Collector.Postgres;
using PowaCluster.Collector.Scheduling;
using PowaCluster.Collector.Spooling;
using PowaCluster.Collector.Staging;
using PowaCluster.Collector.Telemetry;

namespace PowaCluster.Collector.Actors;

/// <summary>
/// Sharded entity, one per remote server (entity id = srvid). Owns the server's remote connection, its
/// schedule, its status and its lease, as explicit states: Connecting → Restoring → Collecting, Waiting (to
/// reconnect) and Stopping. A snapshot is read by a child (SnapshotRun) into a stage at its due time; only the
/// complete stage goes to the node's writer pool, one at a time and in order, while later ones wait in a
/// bounded queue (a slow repository costs a queue, not snapshots). A hung remote stalls this server alone.
/// </summary>
public sealed partial class ServerCollector : ReceiveActor, IWithTimers
{
    readonly CollectorSettings _settings;
    PowaVersion _repositoryPowa;    // the node's at start; then what each store reads (an ALTER EXTENSION powa UPDATE)
    readonly IActorRef _writers;
    readonly IActorRef _coordinator;
    readonly IActorRef _ramp;       // the node's ConnectRamp (Nobody: connect at once, as in actor unit tests)
    readonly StageBudget _stages;
    readonly SnapshotSpool? _nodeSpool;
    ServerSpool? _spool;            // this server's spool on this node, when the node has a usable one
    readonly ILoggingAdapter _log = Context.GetLogger();
    readonly string? _node;
    readonly Random _random = new();

    int _srvId;
    ServerConfig _config = null!;   // the server's powa_servers row, read by this entity (never sent to it)
    string _rowVersion = "";        // that row's version (xmin): the coordinator's EnsureCollecting says when it changed
    bool _readingRow, _refreshAfterRead;
    ServerConfig? _pendingConfig;   // a config change that waits for the snapshot being read
    readonly ServerRecord _record = new();
    long _sequence;
    int _skipped;                   // ticks skipped in a row (a read still running, or a full queue)
    DateTime _lastEnsureUtc = DateTime.UtcNow, _lastStartUtc = DateTime.MinValue;
    RemoteConnection? _remote;
    RemoteVersions? _versions;
    SnapshotPlan _plan = SnapshotPlan.Empty;
    CatalogRefresh? _refresh;       // REFRESH_DB_CAT asked for: the next snapshot reads those catalogs
    IReadOnlySet<string> _guarded = new HashSet<string>();
    int _generation, _failures;     // generation: bumps on every (re)connection, older results are ignored
    bool _scheduled, _handedOff, _stopping;
    bool _collecting;               // connected and scheduled: ticks start reads
    IActorRef? _run;                // the snapshot being read (SnapshotRun), of _runSequence
    long _runSequence;
    CatalogRefresh? _runRefresh;    // the REFRESH_DB_CAT that read takes care of (back to _refresh if it fails)
    long _catalogSequence;          // a snapshot read with the catalogs that are due, not stored yet (0: none)
    long? _seenSequence;            // the server's coalesce_seq as last seen here: an error report never overwrites a newer snapshot's
    readonly Queue<Staged> _queue = new(); // read, waiting for the repository, oldest first
    Staged? _storing;               // at a writer
    readonly CancellationTokenSource _life = new();
    readonly SnapshotClock _clock = new();

    public ITimerScheduler Timers { get; set; } = null!;

    public ServerCollector(CollectorSettings settings, PowaVersion repositoryPowa, IActorRef writers, StageBudget stages,
        IActorRef? coordinator = null, IActorRef? ramp = null, SnapshotSpool? spool = null)
    {
        (_settings, _repositoryPowa, _writers, _stages, _nodeSpool) = (settings, repositoryPowa, writers, stages, spool);
        _coordinator = coordinator ?? ActorRefs.Nobody;
        _ramp = ramp ?? ActorRefs.Nobody;
        try { _node = Cluster.Get(Context.System).SelfAddress.ToString(); }
        catch (Exception) { _node = null; } // not in a cluster (actor unit tests)
        Receive<EnsureCollecting>(m =>
        {
            _srvId = m.SrvId;
            _rowVersion = m.RowVersion;
            ClaimSpool();
            _lastEnsureUtc = DateTime.UtcNow;
            Timers.StartPeriodicTimer("lease", LeaseCheck.Instance, _settings.ResyncInterval);
            Load();
        });
        Receive<GetServerStatus>(_ => Sender.Tell(new ServerStatus(int.TryParse(Self.Path.Name, out var id) ? id : 0,
            CollectorStatus.Stopped, _node, null, null, 0, 0)));
        Receive<ForceSnapshot>(m => Sender.Tell(new ForceSnapshotResult(m.SrvId, false, CollectorProtocol.ServerNotFound(m.SrvId))));
        Receive<RefreshCatalogs>(m => Sender.Tell(new RefreshCatalogsResult(m.SrvId, false, CollectorProtocol.ServerNotFound(m.SrvId))));
        Receive<StopCollecting>(_ => Context.Stop(Self));
        Receive<StopEntity>(_ => Context.Stop(Self));
    }

    // ---- states (each registers its own handlers first, then the common ones) ------------------

    void Connect()
    {
        if (_config.Problem(_settings.ClusterOnLoopback) is { } problem)
        {
            // Not a row to connect with (a socket path, a host list): said in powa_snapshot_metas.errors and the
            // log, tried again after the longest backoff, and at once when the row changes.
            Disconnected(CollectorStatus.NoRemote, problem, report: true, delay: _settings.RetryMaxDelay);
            return;
        }
        var gen = ++_generation;
        Timers.Cancel("reconnect");
        if (_ramp.IsNobody())
        {
            Open(gen);
            return;
        }
        // The node's ConnectRamp paces the connections of a batch of servers (a cold start, a failover).
        _ramp.Tell(new RequestConnect(_srvId, gen, Frequency));
        Become(() =>
        {
            Receive<ConnectGranted>(m => m.Generation == gen, _ => Open(gen));
            Common();
        });
    }

    /// <summary>Opens the remote connection (and checks powa on it): Connected or ConnectFailed.</summary>
    void Open(int gen)
    {
        var csb = _config.ToConnectionString(_settings);
        var life = _life.Token;
        Become(() =>
        {
            Receive<Connected>(m => m.Generation == gen, m => { _ramp.Tell(new ConnectFinished(gen)); OnConnected(m); });
            Receive<ConnectFailed>(m => m.Generation == gen, m =>
            {
                _ramp.Tell(new ConnectFinished(gen));
                CollectorMetrics.RemoteConnectFailures.Add(1, CollectorMetrics.ServerTags(_srvId, _config.Alias));
                Disconnected(CollectorStatus.NoRemote, m.Error, report: true);
                // Another powa than the repository's: the repository's may have changed too (ALTER EXTENSION powa
                // UPDATE there while the remote waits for its own): read again before the next attempt.
                if (m.Setup) ReadRow();
            });
            Common();
        });
        // A remote transaction waits for nothing but the remote; one left by a collector that died ends after a while.
        RemoteQueries.ConnectAsync(csb, _srvId, _repositoryPowa, _settings.ConnectTimeout + _settings.RemoteTimeout,
                _settings.RemoteTimeout + _settings.RemoteTimeout + TimeSpan.FromSeconds(30))
            .ContinueWith(t =>
            {
                if (t.IsCompletedSuccessfully && life.IsCancellationRequested) t.Result.Conn.Dispose(); // nobody to take it
                return t;
            }, TaskScheduler.Default).Unwrap()
            .PipeTo(Self, success: r => new Connected(gen, r.Conn, r.Versions),
                failure: e => e is RemoteSetupException ? new ConnectFailed(gen, e.Message, Setup: true)
                    : new ConnectFailed(gen, $"cannot connect to {Dsn.Describe(csb)}: {PgSession.Describe(e)}"));
    }

    void OnConnected(Connected m)
    {
        _remote = new RemoteConnection(m.Conn);
        _versions = m.Versions;
        _record.Status = CollectorStatus.Running;
        _log.Info("Server {0}: connected to {1}", _srvId, _config.Name);
        _writers.Tell(new RestoreSchedule(_srvId, m.Versions, Self));
        Become(() =>
        {
            Receive<ScheduleRestored>(OnRestored);
            Common();
        });
    }

    void OnRestored(ScheduleRestored m)
    {
        if (m.Last is null || !m.Last.Registered)
        {
            var error = m.Error ?? $"server {_srvId} is not correctly registered: it has no powa_snapshot_metas row";
            Disconnected(CollectorStatus.NoRepository, error, report: false, delay: m.Last is null ? null : _settings.RetryMaxDelay);
            return;
        }
        _failures = 0;
        Saw(m.Last.Sequence);
        // The repository's plan, unless a snapshot read before this reconnection carries the catalogs and is not stored yet.
        _plan = _catalogSequence != 0 ? m.Plan.WithoutCatalogs() : m.Plan;
        _record.Restored(m.Last.At);
        StoreNext(); // what the spool holds (a restart during an outage) is replayed first
        if (m.Plan.IsEmpty) _log.Info("No datasource configured for server {0}", _srvId);
        if (!_scheduled)
        {
            _scheduled = true;
            var due = ServerSchedule.FirstDue(m.Last.At?.UtcDateTime, Frequency, DateTime.UtcNow, _random.NextDouble());
            _log.Debug("Server {0}: first snapshot in {1:F1} s", _srvId, (due - DateTime.UtcNow).TotalSeconds);
            ScheduleAt(due);
        }
        Collecting();
    }

    void Saw(long? sequence)
    {
        if (sequence > (_seenSequence ?? long.MinValue)) _seenSequence = sequence;
    }

    /// <summary>
    /// Connected and scheduled. At each tick a snapshot is read into a stage, unless one is being read (the
    /// remote is slow) or the server's queue of snapshots waiting for the repository is full; stages are
    /// stored one at a time, in order (the store handlers are common to every state: a queue survives a
    /// reconnection).
    /// </summary>
    void Collecting()
    {
        _collecting = true;
        Become(() =>
        {
            Receive<Tick>(t => t.Generation == _generation, _ =>
            {
                ScheduleNext();
                if (_repositoryDown)
                {
                    // Is the repository back? The oldest spooled snapshot tries; with none (the bounds dropped
                    // them, or the disk refused them), this tick's snapshot goes to a writer as a live one.
                    if (_spool is null || (_spool.Count == 0 && Unstored == 0)) _repositoryDown = false;
                    else StoreNext(probe: true);
                }
                OnTick();
            });
            Receive<ForceSnapshot>(m => Sender.Tell(_stopping || Busy ? RefusedForce(m.SrvId) : Force()));
            Common();
        });
        Settle();
    }

    /// <summary>
    /// After a read or a store: a stop or a connection change that waited goes ahead, and a tick skipped
    /// while a snapshot was being read (a slow remote) or while the queue was full is caught up now, as the
    /// reference does after a long snapshot, unless the next is due within half an interval: two snapshots
    /// are never taken less than half an interval apart by catching up.
    /// </summary>
    void Settle()
    {
        if (_stopping)
        {
            if (!Busy) Context.Stop(Self);
            return;
        }
        if (_run is null && _pendingConfig is { } pending)
        {
            _pendingConfig = null;
            if (ApplyConfig(pending)) return;
        }
        if (_collecting && _skipped > 0 && _run is null && CanQueue && _clock.DueUtc - DateTime.UtcNow > Frequency / 2) StartRead();
    }

    /// <summary>No usable remote connection: report, back off, connect again.</summary>
    void Disconnected(string status, string error, bool report, TimeSpan? delay = null, bool snapshotLost = false)
    {
        CloseRemote();
        _failures++;
        _record.Error(status, error, snapshotLost);
        if (_stopping)
        {
            // Snapshots read before are still stored (Settle stops the entity after the last one).
            if (Busy) Become(Common);
            else Context.Stop(Self);
            return;
        }
        var wait = delay ?? ServerSchedule.Backoff(_failures, _settings.RetryMinDelay, _settings.RetryMaxDelay, _random.NextDouble());
        _log.Warning("Server {0}: {1}; retrying in {2:F0} s", _srvId, error, wait.TotalSeconds);
        if (report) _writers.Tell(new ReportErrors(_srvId, [error], _seenSequence, Self));
        Timers.StartSingleTimer("reconnect", Reconnect.Instance, wait);
        Become(() =>
        {
            Receive<Reconnect>(_ => Connect());
            Common();
        });
    }

    // ---- schedule and connection helpers ------------------------------------------------------

    TimeSpan Frequency => TimeSpan.FromSeconds(_config.Frequency);

    void ScheduleAt(DateTime dueUtc) => _clock.At(dueUtc, Self, new Tick(_generation));

    void ScheduleNext() => _clock.Next(Frequency, Self, new Tick(_generation));

    void CloseRemote()
    {
        _remote?.Close();
        _remote = null;
        _scheduled = false;
        _collecting = false;
        _skipped = 0; // the ticks of this connection: a new one gets a schedule of its own
        _clock.Dispose();
    }

    /// <summary>
    /// This server's spool on this node: replayed by this entity from now on (the node's SpoolKeeper leaves it).
    /// </summary>
    void ClaimSpool()
    {
        if (_nodeSpool is not { Usable: true } || _spool is not null) return;
        _spool = _nodeSpool.For(_srvId);
        _spool.Claimed = true;
        _record.Backlog = _spool;
        if (_spool.Count > 0)
            _log.Info("Server {0}: {1} snapshots spooled on this node ({2:F1} MB, the oldest taken at {3:yyyy-MM-dd HH:mm:ss} UTC) are replayed before its next one",
                _srvId, _spool.Count, _spool.Bytes / 1048576.0, _spool.OldestUtc);
    }

    public static Props Props(CollectorSettings settings, PowaVersion repositoryPowa, IActorRef writers, StageBudget stages,
        IActorRef? coordinator = null, IActorRef? ramp = null, SnapshotSpool? spool = null) =>
        Akka.Actor.Props.Create(() => new ServerCollector(settings, repositoryPowa, writers, stages, coordinator, ramp, spool));
}
