using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Sharding;
using Akka.Event;
using Npgsql;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Postgres;

namespace PowaCluster.Collector.Actors;

/// <summary>
/// Sharded entity, one per remote server (entity id = srvid). Owns the remote connection and the snapshot
/// timer. A snapshot streams each datasource's COPY output in bounded chunks to a SnapshotWriter it got from
/// the node's pool. Every database call runs as a task piped back to itself, so the actor always answers
/// status requests, even in the middle of a snapshot.
/// </summary>
public sealed class ServerCollector : ReceiveActor, IWithTimers
{
    readonly CollectorSettings _settings;
    readonly PowaVersion _repositoryPowa;
    readonly IActorRef _writers;
    readonly IActorRef _coordinator;
    readonly ILoggingAdapter _log = Context.GetLogger();
    readonly string? _node;
    readonly Random _random = new();

    ServerConfig? _config;
    string _status = CollectorStatus.NoRemote;
    string? _lastError;
    DateTimeOffset? _lastSnapshot;
    long _snapshots, _failedSnapshots;
    DateTime _lastEnsureUtc = DateTime.UtcNow;

    NpgsqlConnection? _remote;
    Task _remoteTail = Task.CompletedTask; // calls on the remote connection run one after the other
    int _generation;            // bumps on every (re)connection: results of older tasks are ignored
    bool _connecting;
    bool _scheduled;            // the snapshot schedule has been restored for the current connection
    int _failures;              // consecutive connection failures, for the backoff
    DateTime _nextDueUtc;
    DateTime _lastStartUtc = DateTime.MinValue;
    bool _stopRequested;
    bool _handedOff;            // stopped by sharding (hand-off, rebalance): the server must go on elsewhere
    ServerConfig? _pendingConfig;

    Snapshot? _snap;            // the snapshot in flight
    char[]? _buffer;            // one chunk of COPY text, reused by every snapshot of this server

    sealed class Snapshot
    {
        public IActorRef? Writer;
        public IReadOnlyList<Datasource> Datasources = [];
        public int Index = -1;
        public readonly List<string> Errors = [];
        public NpgsqlCopyTextReader? Reader;
        public readonly DateTime StartedUtc = DateTime.UtcNow;
        public Datasource Current => Datasources[Index];
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public ServerCollector(CollectorSettings settings, PowaVersion repositoryPowa, IActorRef writers, IActorRef? coordinator = null)
    {
        _settings = settings;
        _repositoryPowa = repositoryPowa;
        _writers = writers;
        _coordinator = coordinator ?? ActorRefs.Nobody;
        try { _node = Cluster.Get(Context.System).SelfAddress.ToString(); }
        catch (Exception) { _node = null; } // not in a cluster (actor unit tests)

        Receive<EnsureCollecting>(OnEnsure);
        Receive<StopCollecting>(_ => RequestStop("the server was removed or deactivated"));
        Receive<StopEntity>(_ =>
        {
            _handedOff = true;
            RequestStop("its shard is handed off to another node");
        });
        Receive<GetServerStatus>(_ => Sender.Tell(CurrentStatus()));
        Receive<ForceSnapshot>(_ => Sender.Tell(OnForce()));
        Receive<VersionsRead>(OnVersionsRead);

        Receive<Connect>(_ => StartConnect());
        Receive<Connected>(OnConnected);
        Receive<ConnectFailed>(OnConnectFailed);
        Receive<RepositoryJobResult>(OnJobResult);
        Receive<Tick>(OnTick);
        Receive<LeaseCheck>(_ => OnLeaseCheck());
        Receive<SnapshotWatchdog>(OnWatchdog);

        Receive<SessionOpened>(OnSessionOpened);
        Receive<SessionFailed>(m => FailSnapshot(CollectorStatus.NoRepository, m.Error, remoteBroken: false));
        Receive<SessionSkipped>(OnSessionSkipped);
        Receive<SessionLost>(m => { if (_snap?.Writer is not null) _snap.Writer = null; FailSnapshot(CollectorStatus.NoRepository, m.Error, remoteBroken: false); });
        Receive<Step>(OnStep);
        Receive<StepFailed>(OnStepFailed);
        Receive<CopyInReady>(_ => { if (_snap is not null) ReadChunk(); });
        Receive<CopyInFailed>(m => { if (_snap is not null) AbortExport($"Error while inserting data into {m.QuerySource}_tmp: {m.Error}"); });
        Receive<ChunkAck>(OnChunkAck);
        Receive<CopyInDone>(OnCopyInDone);
        Receive<SnapshotCommitted>(OnCommitted);
        Receive<IgnoredResult>(_ => { });
    }

    // ---- configuration and lifecycle -------------------------------------------------------

    void OnEnsure(EnsureCollecting m)
    {
        _lastEnsureUtc = DateTime.UtcNow;
        var cfg = m.Config;
        if (_config is null)
        {
            _config = cfg;
            _log.Info("Starting to collect server {0} ({1}) every {2} s", cfg.SrvId, cfg.Name, cfg.Frequency);
            Timers.StartPeriodicTimer("lease", LeaseCheck.Instance, _settings.ResyncInterval);
            Self.Tell(Connect.Instance);
            return;
        }
        if (cfg != _config)
        {
            if (_snap is not null) _pendingConfig = cfg; // applied once the snapshot in flight ends
            else ApplyConfig(cfg);
        }
        if (m.Refresh) Refresh();
    }

    /// <summary>RELOAD: a server waiting for its next connection attempt tries now; a connected one saves its versions again.</summary>
    void Refresh()
    {
        if (_stopRequested || _config is null) return;
        if (_remote is null)
        {
            if (_connecting) return;
            Timers.Cancel("reconnect");
            _failures = 0;
            Self.Tell(Connect.Instance);
            return;
        }
        if (_snap is not null) return;
        var gen = _generation;
        SerializedRemote((c, ct) => RemoteQueries.ReadVersionsAsync(c, ct))
            .PipeTo(Self, success: v => new VersionsRead(gen, (RemoteVersions)v!), failure: _ => IgnoredResult.Instance);
    }

    void OnVersionsRead(VersionsRead m)
    {
        if (m.Generation != _generation || _config is null) return;
        var srvid = _config.SrvId;
        _writers.Tell(new RunRepositoryJob(srvid, "save-versions", async (conn, ct) =>
        {
            await RepositoryQueries.SaveVersionsAsync(conn, srvid, m.Versions, ct);
            return null;
        }, ActorRefs.Nobody));
    }

    /// <summary>FORCE_SNAPSHOT: now, unless a snapshot is running or one started less than 10 s ago.</summary>
    ForceSnapshotResult OnForce()
    {
        var id = _config?.SrvId ?? 0;
        if (_config is null || _stopRequested)
            return new(id, false, $"server {id} is not being collected");
        if (_snap is not null)
            return new(id, false, $"a snapshot of server {id} is in progress");
        if (DateTime.UtcNow - _lastStartUtc < TimeSpan.FromSeconds(10))
            return new(id, false, $"the last snapshot of server {id} started less than 10 s ago");
        if (_remote is null || !_scheduled || PgSession.IsBroken(_remote))
            return new(id, false, $"server {id}: {_status}{(_lastError is null ? "" : " (" + _lastError + ")")}");
        StartSnapshot();
        return new(id, true, $"snapshot of server {id} started");
    }

    void ApplyConfig(ServerConfig cfg)
    {
        var old = _config!;
        _config = cfg;
        if (old.ConnectionDiffers(cfg))
        {
            _log.Info("Server {0}: connection settings changed ({1} -> {2}), reconnecting", cfg.SrvId, old.Name, cfg.Name);
            CloseRemote();
            _failures = 0;
            Self.Tell(Connect.Instance);
        }
        else if (old.Frequency != cfg.Frequency && _scheduled)
        {
            _log.Info("Server {0}: frequency changed from {1} s to {2} s", cfg.SrvId, old.Frequency, cfg.Frequency);
            var last = _lastSnapshot?.UtcDateTime ?? DateTime.UtcNow;
            ScheduleAt(last + TimeSpan.FromSeconds(cfg.Frequency) > DateTime.UtcNow
                ? last + TimeSpan.FromSeconds(cfg.Frequency) : DateTime.UtcNow);
        }
    }

    void RequestStop(string why)
    {
        if (_stopRequested) return;
        _stopRequested = true;
        _status = CollectorStatus.Stopping;
        _log.Info("Stopping collection of server {0}: {1}", _config?.SrvId.ToString() ?? Self.Path.Name, why);
        if (_snap is null) Context.Stop(Self);
        // otherwise OnCommitted / FailSnapshot stop once the snapshot in flight has ended
    }

    void OnLeaseCheck()
    {
        var lease = TimeSpan.FromTicks(_settings.ResyncInterval.Ticks * _settings.EntityLeaseIntervals);
        if (DateTime.UtcNow - _lastEnsureUtc > lease)
            RequestStop($"no word from the coordinator for {lease.TotalSeconds:F0} s");
    }

    protected override void PostStop()
    {
        if (_handedOff && _config is not null) AskToGoOnElsewhere(_config);
        if (_snap?.Writer is { } w) w.Tell(AbortSession.Instance);
        _snap?.Reader?.Dispose();
        CloseRemote();
        _status = CollectorStatus.Stopped;
    }

    /// <summary>
    /// Sharding starts an entity again only when a message comes for it. A handed-off server must not wait
    /// for the coordinator's next resync, nor for the coordinator itself when it lives on the node that is
    /// leaving: the server's EnsureCollecting goes to the shard region of another member, which routes it to
    /// the shard's new home, and the coordinator is told too (both are idempotent).
    /// </summary>
    void AskToGoOnElsewhere(ServerConfig config)
    {
        List<Member> others;
        try
        {
            var cluster = Cluster.Get(Context.System);
            others = cluster.State.Members
                .Where(m => m.Status == MemberStatus.Up && !m.Address.Equals(cluster.SelfAddress)).ToList();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return; // not in a cluster (actor unit tests)
        }
        // The last node of the cluster is stopping: there is nowhere to go.
        if (others.Count == 0) return;
        var region = others[_random.Next(others.Count)].Address + Self.Path.Parent.Parent.ToStringWithoutAddress();
        Context.ActorSelection(region).Tell(new EnsureCollecting(config));
        _coordinator.Tell(new ServerHandedOff(config.SrvId));
    }

    ServerStatus CurrentStatus() => new(
        _config?.SrvId ?? (int.TryParse(Self.Path.Name, out var id) ? id : 0),
        _stopRequested ? CollectorStatus.Stopping : _config is null ? CollectorStatus.Stopped : _status,
        _node, _lastSnapshot, _lastError, _snapshots, _failedSnapshots);

    // ---- connection ----------------------------------------------------------------------

    void StartConnect()
    {
        if (_connecting || _remote is not null || _config is null || _stopRequested) return;
        _connecting = true;
        var gen = ++_generation;
        var cfg = _config;
        var settings = _settings;
        var repoPowa = _repositoryPowa;
        ConnectAsync(cfg, settings, repoPowa).PipeTo(Self,
            success: r => new Connected(gen, r.Conn, r.Versions),
            failure: e => new ConnectFailed(gen, e is RemoteSetupException ? e.Message
                : $"cannot connect to {Dsn.Describe(cfg.ToConnectionString(settings))}: {PgSession.Describe(e)}"));
    }

    static async Task<(NpgsqlConnection Conn, RemoteVersions Versions)> ConnectAsync(
        ServerConfig cfg, CollectorSettings settings, PowaVersion repoPowa)
    {
        using var cts = PgSession.Timeout(settings.ConnectTimeout + settings.RemoteTimeout);
        // The remote transaction waits while the repository stores the snapshot: a transaction left by a
        // collector that died is ended after longer than that.
        var conn = await PgSession.OpenAsync(cfg.ToConnectionString(settings), cts.Token,
            PgSession.DeadPeerSettings(settings.RepositoryTimeout + settings.RepositoryTimeout + TimeSpan.FromSeconds(30)));
        try
        {
            await RemoteQueries.CheckPowaAsync(conn, repoPowa, cts.Token);
            var versions = await RemoteQueries.ReadVersionsAsync(conn, cts.Token);
            return (conn, versions);
        }
        catch
        {
            await conn.DisposeAsync();
            throw;
        }
    }

    void OnConnected(Connected m)
    {
        if (m.Generation != _generation || _stopRequested) { m.Conn.Dispose(); return; }
        _connecting = false;
        _remote = m.Conn;
        _failures = 0;
        _status = CollectorStatus.Running;
        _log.Info("Server {0}: connected to {1}", _config!.SrvId, _config.Name);
        var srvid = _config.SrvId;
        var versions = m.Versions;
        // Versions saved and last snapshot time read in one short repository transaction.
        _writers.Tell(new RunRepositoryJob(srvid, "restore", async (conn, ct) =>
        {
            await RepositoryQueries.SaveVersionsAsync(conn, srvid, versions, ct);
            return await RepositoryQueries.GetLastSnapshotAsync(conn, srvid, ct);
        }, Self));
    }

    void OnConnectFailed(ConnectFailed m)
    {
        if (m.Generation != _generation) return;
        _connecting = false;
        _failures++;
        _status = CollectorStatus.NoRemote;
        _lastError = m.Error;
        var delay = Backoff();
        _log.Warning("Server {0}: {1}; retrying in {2:F0} s", _config!.SrvId, m.Error, delay.TotalSeconds);
        ReportError(m.Error);
        if (_stopRequested) { Context.Stop(Self); return; }
        Timers.StartSingleTimer("reconnect", Connect.Instance, delay);
    }

    TimeSpan Backoff()
    {
        var ms = _settings.RetryMinDelay.TotalMilliseconds * Math.Pow(2, Math.Min(_failures - 1, 16));
        ms = Math.Min(ms, _settings.RetryMaxDelay.TotalMilliseconds);
        return TimeSpan.FromMilliseconds(ms * (0.8 + 0.4 * _random.NextDouble()));
    }

    /// <summary>Records an error that happened outside a snapshot, as the reference does: it replaces the stored ones.</summary>
    void ReportError(string error)
    {
        var srvid = _config!.SrvId;
        _writers.Tell(new RunRepositoryJob(srvid, "report-error", async (conn, ct) =>
        {
            await RepositoryQueries.ReportErrorsAsync(conn, srvid, [error], replace: true, ct);
            return null;
        }, ActorRefs.Nobody));
    }

    void CloseRemote()
    {
        _generation++;
        _connecting = false;
        _scheduled = false;
        Timers.Cancel("tick");
        try { _remote?.Dispose(); }
        catch (Exception e) { _log.Debug("Closing the remote connection: {0}", e.Message); }
        _remote = null;
        _remoteTail = Task.CompletedTask;
    }

    void OnJobResult(RepositoryJobResult m)
    {
        if (m.What != "restore" || _remote is null) return;
        if (m.Error is not null)
        {
            _status = CollectorStatus.NoRepository;
            _lastError = m.Error;
            // Retry the restore later by reconnecting from scratch.
            CloseRemote();
            _failures++;
            Timers.StartSingleTimer("reconnect", Connect.Instance, Backoff());
            return;
        }
        var last = (LastSnapshot)m.Result!;
        if (!last.Registered)
        {
            _lastError = $"server {_config!.SrvId} is not correctly registered: it has no powa_snapshot_metas row";
            _log.Error(_lastError);
            _status = CollectorStatus.NoRepository;
            CloseRemote();
            Timers.StartSingleTimer("reconnect", Connect.Instance, _settings.RetryMaxDelay);
            return;
        }
        _status = CollectorStatus.Running;
        if (_scheduled) return;
        _scheduled = true;
        _lastSnapshot ??= last.At;
        var due = FirstDue(last.At?.UtcDateTime, TimeSpan.FromSeconds(_config!.Frequency), DateTime.UtcNow, _random.NextDouble());
        _log.Debug("Server {0}: first snapshot in {1:F1} s", _config.SrvId, (due - DateTime.UtcNow).TotalSeconds);
        ScheduleAt(due);
    }

    // ---- schedule ------------------------------------------------------------------------

    /// <summary>
    /// When the first snapshot of a (re)started entity is due, from the last one stored in the repository:
    /// - never snapshotted: at a random phase within the interval, so that servers registered together do not
    ///   fire together;
    /// - last one less than an interval ago (a hand-off): one interval after it, as if nothing had happened;
    /// - overdue (taken over from a node that died, a restart after an outage): soon, at a random point within
    ///   a fifth of an interval, so that servers that move together do not all fire at the same instant; and
    ///   while the gap can still stay under two intervals, before 1.8 intervals have passed since the last
    ///   one (connecting and the writer queue take some time too).
    /// </summary>
    public static DateTime FirstDue(DateTime? lastUtc, TimeSpan frequency, DateTime nowUtc, double random)
    {
        if (lastUtc is not { } last) return nowUtc + frequency * random;
        var since = nowUtc - last;
        if (since <= frequency) return last + frequency;
        var window = frequency / 5;
        if (since < frequency * 2)
        {
            var beforeGapLimit = frequency * 9 / 5 - since; // time left until 1.8 intervals since the last one
            window = TimeSpan.FromTicks(Math.Clamp(beforeGapLimit.Ticks, 0, window.Ticks));
        }
        return nowUtc + window * random;
    }

    void ScheduleAt(DateTime dueUtc)
    {
        _nextDueUtc = dueUtc;
        var delay = dueUtc - DateTime.UtcNow;
        Timers.StartSingleTimer("tick", new Tick(_generation), delay < TimeSpan.Zero ? TimeSpan.Zero : delay);
    }

    void OnTick(Tick t)
    {
        if (t.Generation != _generation || _config is null || _stopRequested) return;
        // Start to start: the next one is due one interval after this one was due, whatever this one takes.
        var freq = TimeSpan.FromSeconds(_config.Frequency);
        var next = _nextDueUtc + freq;
        var now = DateTime.UtcNow;
        if (next <= now) next = now + freq; // fell behind by a whole interval: do not try to catch up
        ScheduleAt(next);
        if (_snap is not null)
        {
            _log.Warning("Server {0}: the previous snapshot is still running after {1:F0} s; this one is skipped",
                _config.SrvId, (now - _snap.StartedUtc).TotalSeconds);
            return;
        }
        if (_remote is null || PgSession.IsBroken(_remote))
        {
            CloseRemote();
            Self.Tell(Connect.Instance);
            return;
        }
        StartSnapshot();
    }

    void StartSnapshot()
    {
        _lastStartUtc = DateTime.UtcNow;
        _snap = new Snapshot();
        _buffer ??= new char[_settings.CopyChunkChars];
        Timers.StartSingleTimer("watchdog", new SnapshotWatchdog(_generation, _snap.StartedUtc),
            _settings.RemoteTimeout + _settings.RepositoryTimeout + _settings.RepositoryTimeout);
        _writers.Tell(new RequestSnapshotSession(_config!.SrvId, _config.Name, Self));
    }

    void OnWatchdog(SnapshotWatchdog w)
    {
        if (_snap is null || w.StartedUtc != _snap.StartedUtc) return;
        FailSnapshot(_status, "the snapshot did not finish in time and was abandoned", remoteBroken: true);
    }

    // ---- snapshot --------------------------------------------------------------------------

    void OnSessionOpened(SessionOpened m)
    {
        if (_snap is null || _snap.Writer is not null || _remote is null)
        {
            Sender.Tell(AbortSession.Instance); // a late answer for a snapshot already given up
            return;
        }
        _snap.Writer = m.Writer;
        _snap.Datasources = m.Datasources;
        if (m.QueueWait > TimeSpan.FromSeconds(1))
            _log.Debug("Server {0}: waited {1:F1} s for a repository writer", _config!.SrvId, m.QueueWait.TotalSeconds);
        if (m.Datasources.Count == 0)
            _log.Info("No datasource configured for server {0}", _config!.SrvId);
        RunRemote(StepKind.Began, (c, ct) => PgSession.ExecAsync(c, "BEGIN", ct));
    }

    /// <summary>
    /// Another collector holds this server's snapshot right now (the cluster moved it, or this node was cut
    /// off): nothing was done on either side; the next tick tries again. Not an error of the server: the log
    /// says it, powa_snapshot_metas does not.
    /// </summary>
    void OnSessionSkipped(SessionSkipped m)
    {
        if (_snap is null || _snap.Writer is not null) return;
        _snap = null;
        Timers.Cancel("watchdog");
        _log.Warning("Server {0}: snapshot skipped: {1}", m.SrvId, m.Reason);
        AfterSnapshot();
    }

    enum StepKind { Began, ExportStarted, ChunkRead, ExportRolledBack, CleanupDone, Committed }

    sealed record Step(int Generation, StepKind Kind, object? Value);
    sealed record StepFailed(int Generation, StepKind Kind, Exception Error);

    /// <summary>Runs one remote call with its timeout and pipes the outcome back as a Step.</summary>
    void RunRemote(StepKind kind, Func<NpgsqlConnection, CancellationToken, Task> op) =>
        RunRemote<object?>(kind, async (c, ct) => { await op(c, ct); return null; });

    void RunRemote<T>(StepKind kind, Func<NpgsqlConnection, CancellationToken, Task<T>> op)
    {
        var gen = _generation;
        SerializedRemote(op).PipeTo(Self, success: v => new Step(gen, kind, v), failure: e => new StepFailed(gen, kind, e));
    }

    /// <summary>Queues a call on the remote connection behind the previous one, with its own timeout.</summary>
    Task<object?> SerializedRemote<T>(Func<NpgsqlConnection, CancellationToken, Task<T>> op)
    {
        var task = RunAfter(_remoteTail, _remote!, _settings.RemoteTimeout, op);
        _remoteTail = task;
        return task;
    }

    /// <summary>
    /// Starts on the caller's thread when the connection is free (no extra thread hop: on a busy node each
    /// wake-up of a pool thread costs more CPU than the call itself), else after the previous call.
    /// It touches no actor state.
    /// </summary>
    static async Task<object?> RunAfter<T>(Task previous, NpgsqlConnection conn, TimeSpan timeout,
        Func<NpgsqlConnection, CancellationToken, Task<T>> op)
    {
        if (!previous.IsCompleted)
        {
            try { await previous.ConfigureAwait(false); } catch (Exception) { /* its own caller saw it */ }
        }
        using var cts = PgSession.Timeout(timeout);
        return await op(conn, cts.Token).ConfigureAwait(false);
    }

    void OnStep(Step s)
    {
        if (s.Generation != _generation || _snap is null)
        {
            if (s.Value is IDisposable d) d.Dispose();
            return;
        }
        switch (s.Kind)
        {
            case StepKind.Began:
            case StepKind.CleanupDone:
                if (s.Value is string cleanupError) _snap.Errors.Add(cleanupError);
                NextDatasource();
                break;
            case StepKind.ExportStarted:
                _snap.Reader = (NpgsqlCopyTextReader)s.Value!;
                _snap.Writer!.Tell(new BeginCopyIn(_snap.Current.QuerySource!));
                break;
            case StepKind.ChunkRead:
                var (n, ended) = ((int, bool))s.Value!;
                if (ended) _snap.Reader = null; // the export completed and its reader is disposed
                if (n > 0)
                    _snap.Writer!.Tell(new CopyChunk(new string(_buffer!, 0, n), Last: ended));
                else
                    _snap.Writer!.Tell(new EndCopyIn(Abort: false)); // an empty export: let the writer complete its COPY
                break;
            case StepKind.ExportRolledBack:
                if (_snap.Writer is { } w && _snap.Reader is null && s.Value is true)
                    w.Tell(new EndCopyIn(Abort: true));
                else
                    Cleanup();
                break;
            case StepKind.Committed:
                FinishOk();
                break;
        }
    }

    void OnStepFailed(StepFailed f)
    {
        if (f.Generation != _generation || _snap is null) return;
        var msg = PgSession.Describe(f.Error);
        if (PgSession.IsBroken(_remote))
        {
            FailSnapshot(CollectorStatus.NoRemote, $"lost the connection to the remote server: {msg}", remoteBroken: true);
            return;
        }
        switch (f.Kind)
        {
            case StepKind.ExportStarted:
                // The datasource is not available on the remote (a missing extension, typically).
                _snap.Errors.Add($"Error while calling public.{_snap.Current.QuerySource}: {msg}");
                RunRemote(StepKind.ExportRolledBack, async (c, ct) => { await PgSession.ExecAsync(c, "ROLLBACK TO SAVEPOINT src", ct); return false; });
                break;
            case StepKind.ChunkRead:
                _snap.Errors.Add($"Error while calling public.{_snap.Current.QuerySource}: {msg}");
                var failedReader = _snap.Reader;
                _snap.Reader = null;
                RunRemote(StepKind.ExportRolledBack, async (c, ct) =>
                {
                    try { if (failedReader is not null) await failedReader.DisposeAsync(); } catch (Exception) { }
                    await PgSession.ExecAsync(c, "ROLLBACK TO SAVEPOINT src", ct);
                    return true; // the writer has a COPY to abort
                });
                break;
            case StepKind.CleanupDone:
                // Only reached when the rollback inside the cleanup failed too.
                FailSnapshot(CollectorStatus.NoRemote, $"remote error: {msg}", remoteBroken: true);
                break;
            default:
                FailSnapshot(CollectorStatus.NoRemote, $"remote error: {msg}", remoteBroken: true);
                break;
        }
    }

    void NextDatasource()
    {
        var snap = _snap!;
        snap.Index++;
        if (snap.Index >= snap.Datasources.Count)
        {
            snap.Writer!.Tell(new FinishSnapshot(snap.Errors.ToList()));
            return;
        }
        var ds = snap.Current;
        if (ds.QuerySource is null)
        {
            _log.Warning("Server {0}: no query_source for {1}", _config!.SrvId, ds.FunctionName);
            NextDatasource();
            return;
        }
        string sql;
        try { sql = RemoteQueries.ExportSql(_config!.SrvId, ds.QuerySource); }
        catch (ArgumentException e)
        {
            snap.Errors.Add($"Error while calling public.{ds.QuerySource}: {e.Message}");
            NextDatasource();
            return;
        }
        RunRemote(StepKind.ExportStarted, async (c, ct) =>
        {
            await PgSession.ExecAsync(c, "SAVEPOINT src", ct);
            return (NpgsqlCopyTextReader)await c.BeginTextExportAsync(sql, ct);
        });
    }

    /// <summary>
    /// Fills the buffer, or reads up to the end of the export: a datasource smaller than one chunk costs one
    /// read and one message, and the end of the export travels with the last chunk.
    /// </summary>
    void ReadChunk()
    {
        var reader = _snap!.Reader!;
        var buffer = _buffer!;
        RunRemote(StepKind.ChunkRead, async (_, ct) =>
        {
            var total = 0;
            while (total < buffer.Length)
            {
                var n = await reader.ReadAsync(buffer.AsMemory(total), ct);
                if (n == 0)
                {
                    await reader.DisposeAsync(); // reads the end of the COPY
                    return (total, true);
                }
                total += n;
            }
            return (total, false);
        });
    }

    void OnChunkAck(ChunkAck a)
    {
        if (_snap is null) return;
        if (a.Error is null) { ReadChunk(); return; }
        AbortExport($"Error while inserting data into {_snap.Current.QuerySource}_tmp: {a.Error}");
    }

    /// <summary>The repository refused the data: stop the remote export and roll both sides back to their savepoints.</summary>
    void AbortExport(string error)
    {
        var snap = _snap!;
        snap.Errors.Add(error);
        var reader = snap.Reader;
        snap.Reader = null;
        RunRemote(StepKind.ExportRolledBack, async (c, ct) =>
        {
            if (reader is not null)
            {
                try { await reader.CancelAsync(); } catch (Exception) { /* the rollback below settles it */ }
                try { await reader.DisposeAsync(); } catch (Exception) { }
            }
            await PgSession.ExecAsync(c, "ROLLBACK TO SAVEPOINT src", ct);
            return true; // the writer still has a COPY or a savepoint to end
        });
    }

    void OnCopyInDone(CopyInDone d)
    {
        if (_snap is null) return;
        if (d.Error is not null)
            _snap.Errors.Add($"Error while inserting data into {d.QuerySource}_tmp: {d.Error}");
        Cleanup();
    }

    void Cleanup()
    {
        var ds = _snap!.Current;
        if (ds.QueryCleanup is null) { NextDatasource(); return; }
        var cleanup = ds.QueryCleanup;
        RunRemote(StepKind.CleanupDone, async (c, ct) =>
        {
            await PgSession.ExecAsync(c, "SAVEPOINT src", ct);
            try
            {
                await PgSession.ExecAsync(c, cleanup, ct);
                await PgSession.ExecAsync(c, "RELEASE SAVEPOINT src", ct);
                return (string?)null;
            }
            catch (PostgresException e)
            {
                await PgSession.ExecAsync(c, "ROLLBACK TO SAVEPOINT src", ct);
                return $"Error while calling {cleanup}: {PgSession.Describe(e)}";
            }
        });
    }

    void OnCommitted(SnapshotCommitted c)
    {
        if (_snap is null) return;
        _snap.Writer = null; // the writer is free again
        RunRemote(StepKind.Committed, (conn, ct) => PgSession.ExecAsync(conn, "COMMIT", ct));
    }

    void FinishOk()
    {
        var snap = _snap!;
        _snap = null;
        Timers.Cancel("watchdog");
        _snapshots++;
        _lastSnapshot = DateTimeOffset.UtcNow;
        _status = CollectorStatus.Running;
        if (snap.Errors.Count > 0)
        {
            _lastError = snap.Errors[^1];
            foreach (var e in snap.Errors) _log.Warning("Server {0}: {1}", _config!.SrvId, e);
        }
        else _lastError = null;
        _log.Debug("Server {0}: snapshot done in {1:F0} ms", _config!.SrvId, (DateTime.UtcNow - snap.StartedUtc).TotalMilliseconds);
        AfterSnapshot();
    }

    /// <summary>Abandons the snapshot in flight: the writer rolls back, the remote transaction ends.</summary>
    void FailSnapshot(string status, string error, bool remoteBroken)
    {
        var snap = _snap;
        if (snap is null) return;
        _snap = null;
        Timers.Cancel("watchdog");
        snap.Writer?.Tell(AbortSession.Instance);
        try { snap.Reader?.Dispose(); } catch (Exception) { }
        _failedSnapshots++;
        _status = status;
        _lastError = error;
        _log.Warning("Server {0}: snapshot failed: {1}", _config!.SrvId, error);
        if (remoteBroken)
        {
            CloseRemote();
            ReportError(error);
            _failures++;
            if (!_stopRequested) Timers.StartSingleTimer("reconnect", Connect.Instance, Backoff());
        }
        else if (_remote is not null)
        {
            // Keep the remote connection; end its transaction now (a no-op when none was begun), so that it
            // is not left idle in transaction until the next snapshot.
            SerializedRemote(async (c, ct) => { await PgSession.ExecAsync(c, "ROLLBACK", ct); return true; })
                .PipeTo(Self, success: _ => IgnoredResult.Instance, failure: _ => IgnoredResult.Instance);
            // The repository error itself cannot be written to the repository: the log has it.
        }
        AfterSnapshot();
    }

    void AfterSnapshot()
    {
        if (_stopRequested) { Context.Stop(Self); return; }
        if (_pendingConfig is { } pending)
        {
            _pendingConfig = null;
            ApplyConfig(pending);
        }
    }

    // ---- internal messages -------------------------------------------------------------------

    sealed record Connect { public static readonly Connect Instance = new(); }
    sealed record Connected(int Generation, NpgsqlConnection Conn, RemoteVersions Versions);
    sealed record ConnectFailed(int Generation, string Error);
    sealed record Tick(int Generation);
    sealed record LeaseCheck { public static readonly LeaseCheck Instance = new(); }
    sealed record SnapshotWatchdog(int Generation, DateTime StartedUtc);
    sealed record IgnoredResult { public static readonly IgnoredResult Instance = new(); }
    sealed record VersionsRead(int Generation, RemoteVersions Versions);

    public static Props Props(CollectorSettings settings, PowaVersion repositoryPowa, IActorRef writers, IActorRef? coordinator = null) =>
        Akka.Actor.Props.Create(() => new ServerCollector(settings, repositoryPowa, writers, coordinator));
}
