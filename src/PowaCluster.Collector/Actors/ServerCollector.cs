using Akka.Actor;
using Akka.Cluster;
using Akka.Event;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Control;
using PowaCluster.Collector.Postgres;
using PowaCluster.Collector.Scheduling;
using PowaCluster.Collector.Staging;

namespace PowaCluster.Collector.Actors;

/// <summary>
/// Sharded entity, one per remote server (entity id = srvid). Owns the server's remote connection, its
/// schedule, its status and its lease, as explicit states: Connecting → Restoring → Ready ⇄ Reading → Storing,
/// Waiting (to reconnect) and Stopping. A snapshot is read by a child (SnapshotRun) into a stage; only the
/// complete stage goes to the node's writer pool. A hung remote stalls this server alone.
/// </summary>
public sealed partial class ServerCollector : ReceiveActor, IWithTimers
{
    readonly CollectorSettings _settings;
    readonly PowaVersion _repositoryPowa;
    readonly IActorRef _writers;
    readonly IActorRef _coordinator;
    readonly StageBudget _stages;
    readonly ILoggingAdapter _log = Context.GetLogger();
    readonly string? _node;
    readonly Random _random = new();

    ServerConfig _config = null!;
    ServerConfig? _pendingConfig;   // a connection change that waits for the snapshot in flight
    readonly ServerRecord _record = new();
    long _sequence;
    int _skipped;                   // ticks skipped in a row while a snapshot was in flight
    DateTime _lastEnsureUtc = DateTime.UtcNow, _lastStartUtc = DateTime.MinValue;
    RemoteConnection? _remote;
    RemoteVersions? _versions;
    SnapshotPlan _plan = SnapshotPlan.Empty;
    CatalogRefresh? _refresh;       // REFRESH_DB_CAT asked for: the next snapshot reads those catalogs
    IReadOnlySet<string> _guarded = new HashSet<string>();
    int _generation, _failures;     // generation: bumps on every (re)connection, older results are ignored
    bool _scheduled, _handedOff, _stopping;
    bool _inFlight;                 // a snapshot is being read or stored: changes and stops wait for it
    readonly CancellationTokenSource _life = new();
    readonly SnapshotClock _clock = new();

    public ITimerScheduler Timers { get; set; } = null!;

    public ServerCollector(CollectorSettings settings, PowaVersion repositoryPowa, IActorRef writers, StageBudget stages,
        IActorRef? coordinator = null)
    {
        (_settings, _repositoryPowa, _writers, _stages) = (settings, repositoryPowa, writers, stages);
        _coordinator = coordinator ?? ActorRefs.Nobody;
        try { _node = Cluster.Get(Context.System).SelfAddress.ToString(); }
        catch (Exception) { _node = null; } // not in a cluster (actor unit tests)
        Receive<EnsureCollecting>(m =>
        {
            _config = m.Config;
            _lastEnsureUtc = DateTime.UtcNow;
            _log.Info("Starting to collect server {0} ({1}) every {2} s", _config.SrvId, _config.Name, _config.Frequency);
            Timers.StartPeriodicTimer("lease", LeaseCheck.Instance, _settings.ResyncInterval);
            Connect();
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
        var gen = ++_generation;
        var csb = _config.ToConnectionString(_settings);
        var life = _life.Token;
        Timers.Cancel("reconnect");
        Become(() =>
        {
            Receive<Connected>(m => m.Generation == gen, OnConnected);
            Receive<ConnectFailed>(m => m.Generation == gen, m => Disconnected(CollectorStatus.NoRemote, m.Error, report: true));
            Common();
        });
        // A remote transaction waits for nothing but the remote; one left by a collector that died ends after a while.
        RemoteQueries.ConnectAsync(csb, _repositoryPowa, _settings.ConnectTimeout + _settings.RemoteTimeout,
                _settings.RemoteTimeout + _settings.RemoteTimeout + TimeSpan.FromSeconds(30))
            .ContinueWith(t =>
            {
                if (t.IsCompletedSuccessfully && life.IsCancellationRequested) t.Result.Conn.Dispose(); // nobody to take it
                return t;
            }, TaskScheduler.Default).Unwrap()
            .PipeTo(Self, success: r => new Connected(gen, r.Conn, r.Versions),
                failure: e => new ConnectFailed(gen, e is RemoteSetupException ? e.Message
                    : $"cannot connect to {Dsn.Describe(csb)}: {PgSession.Describe(e)}"));
    }

    void OnConnected(Connected m)
    {
        _remote = new RemoteConnection(m.Conn);
        _versions = m.Versions;
        _record.Status = CollectorStatus.Running;
        _log.Info("Server {0}: connected to {1}", _config.SrvId, _config.Name);
        _writers.Tell(new RestoreSchedule(_config.SrvId, m.Versions, Self));
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
            var error = m.Error ?? $"server {_config.SrvId} is not correctly registered: it has no powa_snapshot_metas row";
            Disconnected(CollectorStatus.NoRepository, error, report: false, delay: m.Last is null ? null : _settings.RetryMaxDelay);
            return;
        }
        _failures = 0;
        _plan = m.Plan;
        _record.Restored(m.Last.At);
        if (m.Plan.IsEmpty) _log.Info("No datasource configured for server {0}", _config.SrvId);
        if (!_scheduled)
        {
            _scheduled = true;
            var due = ServerSchedule.FirstDue(m.Last.At?.UtcDateTime, Frequency, DateTime.UtcNow, _random.NextDouble());
            _log.Debug("Server {0}: first snapshot in {1:F1} s", _config.SrvId, (due - DateTime.UtcNow).TotalSeconds);
            ScheduleAt(due);
        }
        Ready();
    }

    /// <summary>Connected and scheduled, no snapshot in flight.</summary>
    void Ready()
    {
        _inFlight = false;
        if (_skipped > 1) _log.Info("Server {0}: back on schedule after {1} skipped snapshots", _config.SrvId, _skipped);
        var skipped = _skipped;
        _skipped = 0;
        if (_stopping) { Context.Stop(Self); return; }
        if (_pendingConfig is { } pending)
        {
            _pendingConfig = null;
            if (ApplyConfig(pending)) return;
        }
        Become(() =>
        {
            Receive<Tick>(t => t.Generation == _generation, _ => { ScheduleNext(); StartSnapshot(); });
            Receive<ForceSnapshot>(_ => Sender.Tell(Force()));
            Common();
        });
        // A tick was skipped while this snapshot was in flight (a slow store; a new server's first snapshot,
        // whose catalogs are heavy): the missed one is taken now, as the reference does after a long snapshot,
        // unless the next is due within half an interval. One slow store costs no snapshot, and two are
        // never taken less than half an interval apart by catching up.
        if (skipped > 0 && _clock.DueUtc - DateTime.UtcNow > Frequency / 2) StartSnapshot();
    }

    void StartSnapshot()
    {
        if (_remote is null || _remote.IsBroken)
        {
            Disconnected(CollectorStatus.NoRemote, "the remote connection was lost", report: false, delay: TimeSpan.Zero);
            return;
        }
        _inFlight = true;
        _lastStartUtc = DateTime.UtcNow;
        var seq = ++_sequence;
        var stage = new SnapshotStage(_config.SrvId, _config.Name, _stages) { ServerVersionNum = _versions!.ServerVersionNum };
        var job = new SnapshotJob(_plan, _versions.Schemas, _guarded, _refresh, _config, _settings.RemoteTimeout, _settings.ConnectTimeout);
        var refresh = _refresh;
        _refresh = null;
        var run = Context.ActorOf(SnapshotRun.Props(_remote, stage, job), $"run-{seq}");
        Become(() =>
        {
            Receive<SnapshotRead>(_ => Sender.Equals(run), m => Store(m, seq));
            Receive<SnapshotReadFailed>(_ => Sender.Equals(run), m =>
            {
                _inFlight = false;
                if (refresh is not null) _refresh = CatalogRefresh.Merge(_refresh, refresh); // for the next snapshot
                Disconnected(CollectorStatus.NoRemote, m.Error, report: true, snapshotLost: true);
            });
            SkipTicks("read");
            Common();
        });
    }

    void Store(SnapshotRead m, long seq)
    {
        _guarded = m.Stage.FailedSteps.ToHashSet(); // what failed now gets a savepoint next time
        _writers.Tell(new StoreSnapshot(m.Stage, seq, Self));
        Timers.StartSingleTimer("store-watchdog", new StoreWatchdog(seq), _settings.RepositoryTimeout * 2 + TimeSpan.FromMinutes(1));
        Become(() =>
        {
            Receive<SnapshotStored>(r => r.Sequence == seq, OnStored);
            Receive<SnapshotNotStored>(r => r.Sequence == seq, OnNotStored);
            Receive<StoreWatchdog>(w => w.Sequence == seq,
                _ => OnNotStored(new(_config.SrvId, seq, "the repository did not answer in time", TimeSpan.Zero)));
            SkipTicks("stored");
            Common();
        });
    }

    void OnStored(SnapshotStored m)
    {
        Timers.Cancel("store-watchdog");
        _record.Stored(m.Result);
        if (m.Result.Outcome == StoreOutcome.Skipped)
            _log.Warning("Server {0}: snapshot skipped: {1}", m.SrvId, m.Result.SkipReason);
        else _plan = m.Result.Plan;
        foreach (var e in m.Result.Errors) _log.Warning("Server {0}: {1}", m.SrvId, e);
        if (m.Result.TakeSnapshotErrors != 0)
            _log.Warning("powa_take_snapshot({0}) reported {1} error(s); see the repository server's log", m.SrvId, m.Result.TakeSnapshotErrors);
        Ready();
    }

    void OnNotStored(SnapshotNotStored m)
    {
        Timers.Cancel("store-watchdog");
        _record.Error(CollectorStatus.NoRepository, m.Error, snapshotLost: true);
        _log.Warning("Server {0}: snapshot not stored: {1}", m.SrvId, m.Error);
        Ready();
    }

    /// <summary>No usable remote connection: report, back off, connect again.</summary>
    void Disconnected(string status, string error, bool report, TimeSpan? delay = null, bool snapshotLost = false)
    {
        CloseRemote();
        _failures++;
        _record.Error(status, error, snapshotLost);
        if (_stopping) { Context.Stop(Self); return; }
        var wait = delay ?? ServerSchedule.Backoff(_failures, _settings.RetryMinDelay, _settings.RetryMaxDelay, _random.NextDouble());
        _log.Warning("Server {0}: {1}; retrying in {2:F0} s", _config.SrvId, error, wait.TotalSeconds);
        if (report) _writers.Tell(new ReportErrors(_config.SrvId, [error]));
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
        _clock.Dispose();
    }

    public static Props Props(CollectorSettings settings, PowaVersion repositoryPowa, IActorRef writers, StageBudget stages,
        IActorRef? coordinator = null) =>
        Akka.Actor.Props.Create(() => new ServerCollector(settings, repositoryPowa, writers, stages, coordinator));
}
