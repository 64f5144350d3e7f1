using Akka.Actor;
using Akka.Event;
using Npgsql;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Postgres;

namespace PowaCluster.Collector.Actors;

/// <summary>
/// Holds one persistent repository connection and runs one transaction at a time: a snapshot session
/// (COPY chunks in, powa_take_snapshot, errors, commit) or a short repository job.
/// It awaits its database calls (ReceiveAsync): while it writes a chunk, the next one waits in the
/// collector, which only reads the remote again after the ChunkAck; that is the back-pressure.
/// </summary>
public sealed class SnapshotWriter : ReceiveActor, IWithTimers
{
    readonly CollectorSettings _settings;
    readonly NpgsqlConnectionStringBuilder _csb;
    readonly ILoggingAdapter _log = Context.GetLogger();
    NpgsqlConnection? _conn;
    string? _lastConnectError;
    DateTime _lastConnectFailureUtc = DateTime.MinValue;

    // The current session.
    IActorRef? _requester;
    int _srvid;
    NpgsqlTransaction? _tx;
    NpgsqlCopyTextWriter? _copy;
    string? _copySource;
    string? _copyError;

    public ITimerScheduler Timers { get; set; } = null!;

    public SnapshotWriter(CollectorSettings settings, NpgsqlConnectionStringBuilder repository, int index)
    {
        _settings = settings;
        _csb = PgSession.ForRole(repository, $"PoWA collector - repo_conn {index}", settings.ConnectTimeout, settings.RepositoryTimeout);
        ReceiveAsync<AssignWork>(OnAssign);
        ReceiveAsync<BeginCopyIn>(m => InSession(() => OnBeginCopyIn(m)));
        ReceiveAsync<CopyChunk>(m => InSession(() => OnChunk(m)));
        ReceiveAsync<EndCopyIn>(m => InSession(() => OnEndCopyIn(m)));
        ReceiveAsync<FinishSnapshot>(m => InSession(() => OnFinish(m)));
        ReceiveAsync<AbortSession>(_ => Sender.Equals(_requester) ? EndSession("aborted by its collector") : Task.CompletedTask);
        ReceiveAsync<Terminated>(t => t.ActorRef.Equals(_requester) ? EndSession("its collector stopped") : Task.CompletedTask);
        ReceiveAsync<ReceiveTimeout>(_ =>
        {
            if (_requester is null) return Task.CompletedTask;
            // Tell the collector now rather than let it find out through its own watchdog.
            _requester.Tell(new SessionLost(_srvid, "the snapshot transaction was idle for too long and was rolled back"));
            return EndSession("idle for too long");
        });
    }

    protected override void PreStart() => Context.Parent.Tell(new WriterIdle(Self));

    protected override void PostStop()
    {
        _conn?.Dispose(); // an open transaction is rolled back by the server when the connection closes
        _conn = null;
    }

    async Task<NpgsqlConnection> ConnectionAsync()
    {
        if (_conn is not null && !PgSession.IsBroken(_conn)) return _conn;
        if (_conn is not null) { await _conn.DisposeAsync(); _conn = null; }
        // After a failure, do not let every queued snapshot wait for its own connect timeout.
        if (_lastConnectError is not null && DateTime.UtcNow - _lastConnectFailureUtc < _settings.RetryMinDelay)
            throw new RepositoryUnavailableException(_lastConnectError);
        try
        {
            using var cts = PgSession.Timeout(_settings.ConnectTimeout);
            _conn = await PgSession.OpenAsync(_csb, cts.Token, RepositorySessionSettings(_settings));
            if (_lastConnectError is not null) _log.Info("Repository connection restored");
            _lastConnectError = null;
            Context.Parent.Tell(new RepositoryOutcome(true, null));
            return _conn;
        }
        catch (Exception e) when (e is NpgsqlException or OperationCanceledException or System.Net.Sockets.SocketException)
        {
            _lastConnectError = $"no connection to repository server {Dsn.Describe(_csb)}: {PgSession.Describe(e)}";
            _lastConnectFailureUtc = DateTime.UtcNow;
            _log.Warning(_lastConnectError);
            Context.Parent.Tell(new RepositoryOutcome(false, _lastConnectError));
            throw new RepositoryUnavailableException(_lastConnectError);
        }
    }

    async Task OnAssign(AssignWork w)
    {
        var waited = DateTime.UtcNow - w.EnqueuedAtUtc;
        switch (w.Work)
        {
            case RequestSnapshotSession s: await OpenSession(s, waited); break;
            case RunRepositoryJob j: await RunJob(j); break;
        }
    }

    async Task RunJob(RunRepositoryJob job)
    {
        try
        {
            var conn = await ConnectionAsync();
            using var cts = PgSession.Timeout(_settings.RepositoryTimeout);
            await using var tx = await conn.BeginTransactionAsync(cts.Token);
            var result = await job.Job(conn, cts.Token);
            await tx.CommitAsync(cts.Token);
            Context.Parent.Tell(new RepositoryOutcome(true, null));
            job.ReplyTo.Tell(new RepositoryJobResult(job.SrvId, job.What, result, null));
        }
        catch (Exception e)
        {
            var msg = e is RepositoryUnavailableException ? e.Message : PgSession.Describe(e);
            _log.Warning("Repository job {0} for server {1} failed: {2}", job.What, job.SrvId, msg);
            job.ReplyTo.Tell(new RepositoryJobResult(job.SrvId, job.What, null, msg));
            await DropIfBroken();
        }
        Context.Parent.Tell(new WriterIdle(Self));
    }

    async Task OpenSession(RequestSnapshotSession s, TimeSpan waited)
    {
        try
        {
            var conn = await ConnectionAsync();
            using var cts = PgSession.Timeout(_settings.RepositoryTimeout);
            _tx = await conn.BeginTransactionAsync(cts.Token);
            var datasources = await RepositoryQueries.BeginSnapshotAsync(conn, s.SrvId, s.ServerName, cts.Token);
            _requester = s.Requester;
            _srvid = s.SrvId;
            Context.Watch(_requester);
            SetReceiveTimeout(_settings.RemoteTimeout + _settings.RemoteTimeout);
            s.Requester.Tell(new SessionOpened(s.SrvId, Self, datasources, waited));
        }
        catch (SnapshotInProgressException e)
        {
            s.Requester.Tell(new SessionSkipped(s.SrvId, e.Message));
            await ResetSession();
            Context.Parent.Tell(new WriterIdle(Self));
        }
        catch (Exception e)
        {
            var msg = e is RepositoryUnavailableException ? e.Message : $"cannot start a snapshot transaction: {PgSession.Describe(e)}";
            s.Requester.Tell(new SessionFailed(s.SrvId, msg));
            await ResetSession();
            await DropIfBroken();
            Context.Parent.Tell(new WriterIdle(Self));
        }
    }

    /// <summary>Runs a session step; a failure that cost the connection ends the session with SessionLost.</summary>
    async Task InSession(Func<Task> step)
    {
        if (_requester is null || !Sender.Equals(_requester))
        {
            _log.Warning("Ignoring a session message from {0}, not the current session's collector", Sender);
            return;
        }
        try
        {
            await step();
        }
        catch (Exception e)
        {
            // Whatever failed, the transaction cannot go on: say so and roll it back.
            var msg = PgSession.IsBroken(_conn)
                ? $"lost the repository connection: {PgSession.Describe(e)}"
                : $"repository error: {PgSession.Describe(e)}";
            _log.Warning("Snapshot of server {0}: {1}", _srvid, msg);
            _requester.Tell(new SessionLost(_srvid, msg));
            await EndSession(null);
        }
    }

    async Task OnBeginCopyIn(BeginCopyIn m)
    {
        _copySource = m.QuerySource;
        _copyError = null;
        using var cts = PgSession.Timeout(_settings.RepositoryTimeout);
        await PgSession.ExecAsync(_conn!, "SAVEPOINT data", cts.Token);
        try
        {
            _copy = (NpgsqlCopyTextWriter)await _conn!.BeginTextImportAsync(RemoteQueries.ImportSql(m.QuerySource), cts.Token);
            Sender.Tell(new CopyInReady(m.QuerySource));
        }
        catch (Exception e) when (e is PostgresException or ArgumentException)
        {
            _copy = null;
            await PgSession.ExecAsync(_conn!, "ROLLBACK TO SAVEPOINT data", cts.Token);
            Sender.Tell(new CopyInFailed(m.QuerySource, PgSession.Describe(e)));
        }
    }

    async Task OnChunk(CopyChunk m)
    {
        if (_copy is null || _copyError is not null)
        {
            Sender.Tell(new ChunkAck(_copyError ?? "no COPY in progress"));
            return;
        }
        try
        {
            using var cts = PgSession.Timeout(_settings.RepositoryTimeout);
            await _copy.WriteAsync(m.Data.AsMemory(), cts.Token);
        }
        catch (Exception e) when (e is PostgresException || !PgSession.IsBroken(_conn))
        {
            // The server rejected the data early: remember it, the collector will end the COPY.
            _copyError = PgSession.Describe(e);
            Sender.Tell(new ChunkAck(_copyError));
            return;
        }
        if (m.Last) await CompleteCopy(abort: false); // saves the collector an EndCopyIn round trip
        else Sender.Tell(new ChunkAck(null));
    }

    Task OnEndCopyIn(EndCopyIn m) => CompleteCopy(m.Abort);

    /// <summary>Ends the COPY (completed, or cancelled on abort or error) and answers CopyInDone.</summary>
    async Task CompleteCopy(bool abort)
    {
        var source = _copySource ?? "";
        var error = _copyError;
        using var cts = PgSession.Timeout(_settings.RepositoryTimeout);
        if (_copy is not null)
        {
            var copy = _copy;
            _copy = null;
            try
            {
                if (abort || error is not null) await copy.CancelAsync();
                await copy.DisposeAsync(); // completes the COPY when it was not cancelled
            }
            catch (Exception e) when (!PgSession.IsBroken(_conn))
            {
                if (!abort) error ??= PgSession.Describe(e);
            }
        }
        // As the reference does, a savepoint that served is not released (one round trip less per
        // datasource); the next "SAVEPOINT data" shadows it and the commit ends them all.
        if (abort || error is not null)
            await PgSession.ExecAsync(_conn!, "ROLLBACK TO SAVEPOINT data", cts.Token);
        // On abort the collector already knows why; say nothing more.
        Sender.Tell(new CopyInDone(source, abort ? null : error));
        _copySource = null;
        _copyError = null;
    }

    async Task OnFinish(FinishSnapshot m)
    {
        var errors = m.Errors.ToList();
        var conn = _conn!;
        using var cts = PgSession.Timeout(_settings.RepositoryTimeout);
        var takeErrors = 0;
        await PgSession.ExecAsync(conn, "SAVEPOINT powa_take_snapshot", cts.Token);
        try
        {
            takeErrors = await RepositoryQueries.TakeSnapshotAsync(conn, _srvid, cts.Token);
            await PgSession.ExecAsync(conn, "RELEASE SAVEPOINT powa_take_snapshot", cts.Token);
            if (takeErrors != 0)
                _log.Warning("powa_take_snapshot({0}) reported {1} error(s); see the repository server's log", _srvid, takeErrors);
        }
        catch (PostgresException e)
        {
            await PgSession.ExecAsync(conn, "ROLLBACK TO SAVEPOINT powa_take_snapshot", cts.Token);
            errors.Add($"Error while taking snapshot for server {_srvid}: {PgSession.Describe(e)}");
        }
        // After powa_take_snapshot, which resets the errors.
        if (errors.Count > 0)
        {
            await PgSession.ExecAsync(conn, "SAVEPOINT metas", cts.Token);
            try
            {
                await RepositoryQueries.ReportErrorsAsync(conn, _srvid, errors, replace: false, cts.Token);
                await PgSession.ExecAsync(conn, "RELEASE SAVEPOINT metas", cts.Token);
            }
            catch (PostgresException e)
            {
                await PgSession.ExecAsync(conn, "ROLLBACK TO SAVEPOINT metas", cts.Token);
                _log.Warning("Could not record the errors of server {0}: {1}", _srvid, PgSession.Describe(e));
            }
        }
        await _tx!.CommitAsync(cts.Token);
        _tx = null;
        Context.Parent.Tell(new RepositoryOutcome(true, null));
        _requester!.Tell(new SnapshotCommitted(_srvid, takeErrors));
        await EndSession(null);
    }

    /// <summary>Rolls back whatever is open and becomes available to the pool again.</summary>
    async Task EndSession(string? why)
    {
        if (why is not null) _log.Warning("Snapshot transaction of server {0} rolled back: {1}", _srvid, why);
        await ResetSession();
        await DropIfBroken();
        Context.Parent.Tell(new WriterIdle(Self));
    }

    async Task ResetSession()
    {
        if (_requester is not null) Context.Unwatch(_requester);
        _requester = null;
        SetReceiveTimeout(null);
        try
        {
            if (_copy is not null) await _copy.CancelAsync();
        }
        catch (Exception) { /* the rollback below, or the dropped connection, discards it */ }
        _copy = null;
        _copySource = null;
        _copyError = null;
        if (_tx is not null)
        {
            try { await _tx.RollbackAsync(); }
            catch (Exception e) { _log.Warning("Rollback failed: {0}", PgSession.Describe(e)); }
            _tx = null;
        }
    }

    async Task DropIfBroken()
    {
        if (_conn is not null && PgSession.IsBroken(_conn))
        {
            Context.Parent.Tell(new RepositoryOutcome(false, $"lost the connection to the repository server {Dsn.Describe(_csb)}"));
            await _conn.DisposeAsync();
            _conn = null;
        }
    }

    /// <summary>
    /// A transaction left open by a collector that died without closing its connection (a host that lost
    /// power) must not hold powa_snapshot_metas locks until TCP notices: the repository ends it after longer
    /// than the longest wait between two steps of a snapshot, and probes the connection every 30 s.
    /// </summary>
    internal static IReadOnlyDictionary<string, string> RepositorySessionSettings(CollectorSettings s) =>
        PgSession.DeadPeerSettings(s.RemoteTimeout + s.RemoteTimeout + TimeSpan.FromSeconds(30));

    public static Props Props(CollectorSettings settings, NpgsqlConnectionStringBuilder repository, int index) =>
        Akka.Actor.Props.Create(() => new SnapshotWriter(settings, repository, index));
}

/// <summary>The repository cannot be reached; the message names it (without password).</summary>
public sealed class RepositoryUnavailableException(string message) : Exception(message);
