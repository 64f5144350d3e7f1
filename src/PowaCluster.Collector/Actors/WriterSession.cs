using System.Diagnostics;
using Akka.Event;
using Npgsql;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Postgres;
using PowaCluster.Collector.Spooling;
using PowaCluster.Collector.Staging;
using PowaCluster.Collector.Telemetry;

namespace PowaCluster.Collector.Actors;

/// <summary>
/// A SnapshotWriter's repository connection and what it remembers of its failures. Its work runs one piece at
/// a time, as a task off the writer's thread (the pool gives a writer work only when it is idle), so only that
/// task touches it; Close, from the writer's PostStop, closes the connection under it.
/// </summary>
internal sealed class WriterSession(CollectorSettings settings, NpgsqlConnectionStringBuilder repository, PowaSql sql, int index,
    string? identity, TimeProvider time, CollectorMetrics metrics, ILoggingAdapter log)
{
    readonly NpgsqlConnectionStringBuilder _csb = Connection(repository, index, settings);
    readonly string? _identity = identity; // what the repository was at start: every connection must find the same
    NpgsqlConnection? _conn;
    string? _lastConnectError;
    DateTime _lastConnectFailureUtc = DateTime.MinValue;
    int _closed;

    DateTime CurrentUtc => time.GetUtcNow().UtcDateTime;
    bool Closed => Volatile.Read(ref _closed) != 0;

    static NpgsqlConnectionStringBuilder Connection(NpgsqlConnectionStringBuilder repository, int index, CollectorSettings settings)
    {
        var csb = PgSession.ForRole(repository, $"PoWA collector - repo_conn {index}", settings.ConnectTimeout, settings.RepositoryTimeout);
        // A stored snapshot is hundreds of kB of COPY: write it in large pieces (Npgsql's default is 8 kB).
        csb.WriteBufferSize = 64 * 1024;
        return csb;
    }

    /// <summary>The writer stops: the connection is closed (off the caller's thread: Dispose waits for a call in flight).</summary>
    public void Close()
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0) return;
        var conn = Interlocked.Exchange(ref _conn, null);
        if (conn is not null) _ = Task.Run(() => conn.Dispose());
    }

    string? _lastFailure;
    DateTime _lastFailureLogUtc;

    public async Task<WorkDone> RunAsync(IWriterWork work, TimeSpan waited, Stopwatch sw)
    {
        try
        {
            var conn = await ConnectionAsync().ConfigureAwait(false);
            using var cts = PgSession.Timeout(settings.RepositoryTimeout);
            object? reply = work switch
            {
                StoreSnapshot s => await StoreAsync(conn, s, waited, sw, cts.Token).ConfigureAwait(false),
                RestoreSchedule r => await RestoreAsync(conn, r, cts.Token).ConfigureAwait(false),
                ReadServer r => ServerReadOf(r.SrvId, await RepositoryQueries.LoadActiveServerAsync(sql, conn, r.SrvId, cts.Token).ConfigureAwait(false)),
                LoadServers l => new ServersRead(await RepositoryQueries.LoadActiveServersAsync(sql, conn, cts.Token, passwords: l.Passwords).ConfigureAwait(false), null),
                SaveVersions v => await InTransaction(conn, c => RepositoryQueries.SaveVersionsAsync(sql, c, v.SrvId, v.Versions, cts.Token), cts.Token).ConfigureAwait(false),
                ReportErrors e => await ReportAsync(conn, e, cts.Token).ConfigureAwait(false),
                CheckRepository => await InTransaction(conn, c => PgSession.ExecAsync(c, "SELECT 1", cts.Token), cts.Token).ConfigureAwait(false),
                VacuumStaging => await VacuumAsync(conn, sw, cts.Token).ConfigureAwait(false),
                _ => throw new ArgumentException($"unknown writer work {work.GetType().Name}"),
            };
            return new WorkDone(work, reply, sw.Elapsed, work is StoreSnapshot, new RepositoryOutcome(true, null));
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            var msg = e is RepositoryUnavailableException ? e.Message : PgSession.Describe(e);
            await ResetConnectionAsync().ConfigureAwait(false);
            // The first failure of a kind, then once a minute: the entities say what each failure cost.
            if (work is not CheckRepository && !Closed && (msg != _lastFailure || CurrentUtc - _lastFailureLogUtc > TimeSpan.FromMinutes(1)))
            {
                _lastFailure = msg;
                _lastFailureLogUtc = CurrentUtc;
                log.Warning("Repository work for server {0} ({1}) failed: {2}", work.SrvId, work.GetType().Name, msg);
            }
            var down = RepositoryDown(e, _conn is null);
            object? reply = work switch
            {
                StoreSnapshot s => await NotStoredAsync(s, msg, down, e is IOException, waited).ConfigureAwait(false),
                RestoreSchedule r => new ScheduleRestored(r.SrvId, null, SnapshotPlan.Empty, msg),
                ReadServer r => new ServerRead(r.SrvId, null, msg),
                LoadServers => new ServersRead([], msg),
                _ => null,
            };
            var broken = work is CheckRepository || e is RepositoryUnavailableException || _conn is null;
            return new WorkDone(work, reply, sw.Elapsed, false, broken ? new RepositoryOutcome(false, msg) : null);
        }
        finally
        {
            if (work is StoreSnapshot s) s.Stage?.Dispose();
        }
    }

    /// <summary>
    /// The repository failed, not the snapshot: it cannot be reached, timed out, is shutting down, starting,
    /// read-only (a standby after a failover), out of resources; or the connection broke. Storing the snapshot
    /// later can work: it is spooled. Anything else (an error in the snapshot's own data) would fail again.
    /// </summary>
    internal static bool RepositoryDown(Exception e, bool connectionBroken) => connectionBroken || e switch
    {
        RepositoryUnavailableException or TimeoutException or OperationCanceledException or System.Net.Sockets.SocketException => true,
        PostgresException p => p.SqlState.StartsWith("08", StringComparison.Ordinal) || p.SqlState.StartsWith("57", StringComparison.Ordinal)
                               || p.SqlState.StartsWith("53", StringComparison.Ordinal) || p.SqlState.StartsWith("58", StringComparison.Ordinal)
                               || p.SqlState is "25006" or "40001" or "40P01" or "55P03",
        NpgsqlException n => n.IsTransient || n.InnerException is IOException or System.Net.Sockets.SocketException or TimeoutException,
        _ => false,
    };

    /// <summary>
    /// A snapshot not stored: written to its server's spool when the repository is down (a live one), or left
    /// there (a replayed one); otherwise lost (a replayed one is deleted: the repository refuses it for good).
    /// </summary>
    /// <param name="local">this node failed (its disk), not the repository nor the snapshot</param>
    static async Task<SnapshotNotStored> NotStoredAsync(StoreSnapshot s, string msg, bool down, bool local, TimeSpan waited)
    {
        if (s.Replay is { } entry && s.Spool is { } from)
        {
            // Only the repository's verdict deletes a spooled snapshot: a local fault (the file cannot be read
            // now, the stage cannot be written) keeps it for the next try.
            var keep = down || local;
            if (keep) s.Spool!.Release(entry);
            else s.Spool!.Remove(entry, replayed: false);
            return new SnapshotNotStored(s.SrvId, s.Sequence, msg, waited, keep, entry);
        }
        if (!down || s.Spool is not { } spool || s.Stage is null) return new SnapshotNotStored(s.SrvId, s.Sequence, msg, waited);
        try
        {
            await spool.WriteAsync(s.Stage, s.Sequence, CancellationToken.None).ConfigureAwait(false);
            return new SnapshotNotStored(s.SrvId, s.Sequence, msg, waited, Spooled: true);
        }
        catch (SpoolException x)
        {
            return new SnapshotNotStored(s.SrvId, s.Sequence, msg, waited, SpoolError: x.Message);
        }
    }

    static ServerRead ServerReadOf(int srvid, (ServerRow? Row, string? RepositoryPowa) read) => new(srvid, read.Row, null, read.RepositoryPowa);

    async Task<SnapshotStored> StoreAsync(NpgsqlConnection conn, StoreSnapshot s, TimeSpan waited, Stopwatch sw, CancellationToken ct)
    {
        var started = sw.Elapsed;
        StoreResult result;
        if (s.Replay is { } entry && s.Spool is { } from)
        {
            // A spooled snapshot: stored exactly like a live one, from its file; the file goes after the commit.
            // A file that is not what this collector writes is moved aside, whatever the repository would say.
            try
            {
                using var stage = await from.OpenAsync(entry, ct).ConfigureAwait(false);
                result = await SnapshotStore.StoreAsync(sql, conn, stage, ct).ConfigureAwait(false);
            }
            catch (StageRejectedException e) { result = new StoreResult(StoreOutcome.Rejected, SnapshotPlan.Empty, 0, [], e.Message); }
            if (result.Outcome == StoreOutcome.Rejected) from.Reject(entry, result.SkipReason!);
            // Stored, fenced or refused for its powa version (storing it later would not help): the file goes.
            else if (result.Outcome is StoreOutcome.Stored or StoreOutcome.Refused || result.Fenced)
                from.Remove(entry, replayed: result.Outcome == StoreOutcome.Stored);
            else from.Release(entry); // another collector holds the server's lock now: later
        }
        else result = await SnapshotStore.StoreAsync(sql, conn, s.Stage!, ct).ConfigureAwait(false);
        metrics.SnapshotDuration.Record((sw.Elapsed - started).TotalSeconds, new KeyValuePair<string, object?>("phase", "store"));
        return new SnapshotStored(s.SrvId, s.Sequence, result, waited, sw.Elapsed - started, s.Replay);
    }

    async Task<ScheduleRestored> RestoreAsync(NpgsqlConnection conn, RestoreSchedule r, CancellationToken ct)
    {
        LastSnapshot last = null!;
        var plan = SnapshotPlan.Empty;
        await InTransaction(conn, async c =>
        {
            await RepositoryQueries.SaveVersionsAsync(sql, c, r.SrvId, r.Versions, ct).ConfigureAwait(false);
            last = await RepositoryQueries.GetLastSnapshotAsync(sql, c, r.SrvId, ct).ConfigureAwait(false);
            plan = await SnapshotStore.GetPlanAsync(sql, c, r.SrvId, r.Versions.ServerVersionNum, ct).ConfigureAwait(false);
        }, ct).ConfigureAwait(false);
        return new ScheduleRestored(r.SrvId, last, plan, null);
    }

    async Task<ErrorsReported> ReportAsync(NpgsqlConnection conn, ReportErrors e, CancellationToken ct)
    {
        (bool Written, long? Sequence) done = default;
        await InTransaction(conn, async c => done = await RepositoryQueries.ReportErrorsAsync(sql, c, e.SrvId, e.Errors, replace: true, ct,
            e.SeenSequence).ConfigureAwait(false), ct).ConfigureAwait(false);
        return new ErrorsReported(e.SrvId, done.Written, done.Sequence);
    }

    bool _vacuumRefusedSaid;

    /// <summary>Not answered: the pool hears the writer is idle. Said once a session: the tables it may not vacuum.</summary>
    async Task<object?> VacuumAsync(NpgsqlConnection conn, Stopwatch sw, CancellationToken ct)
    {
        var (vacuumed, notAllowed) = await RepositoryQueries.VacuumStagingAsync(conn, ct).ConfigureAwait(false);
        log.Debug("Vacuumed {0} staging tables in {1:F0} ms", vacuumed, sw.Elapsed.TotalMilliseconds);
        if (notAllowed > 0 && !_vacuumRefusedSaid)
        {
            _vacuumRefusedSaid = true;
            log.Info("The repository role may not vacuum {0} of the *_src_tmp tables (it is not their owner): they are left to " +
                     "autovacuum, and at high snapshot rates they bloat and slow every snapshot (README, StagingVacuumInterval)", notAllowed);
        }
        return null;
    }

    /// <summary>Runs a short job in its own transaction; null: nothing to answer.</summary>
    static async Task<object?> InTransaction(NpgsqlConnection conn, Func<NpgsqlConnection, Task> job, CancellationToken ct)
    {
        var tx = await conn.BeginTransactionAsync(ct).ConfigureAwait(false);
        await using var txScope = tx.ConfigureAwait(false);
        await job(conn).ConfigureAwait(false);
        await tx.CommitAsync(ct).ConfigureAwait(false);
        return null;
    }

    async Task<NpgsqlConnection> ConnectionAsync()
    {
        if (_conn is not null && !PgSession.IsBroken(_conn)) return _conn;
        await ResetConnectionAsync().ConfigureAwait(false);
        // After a failure, do not let every queued snapshot wait for its own connect timeout.
        if (_lastConnectError is not null && CurrentUtc - _lastConnectFailureUtc < settings.RetryMinDelay)
            throw new RepositoryUnavailableException(_lastConnectError);
        try
        {
            using var cts = PgSession.Timeout(settings.ConnectTimeout);
            _conn = await PgSession.OpenAsync(_csb, cts.Token, RepositorySessionSettings).ConfigureAwait(false);
            // Closed meanwhile (the writer stopped): nobody else would close this one.
            if (Closed) throw new RepositoryUnavailableException("the writer stopped");
            await CheckIdentityAsync(_conn, cts.Token).ConfigureAwait(false);
            if (_lastConnectError is not null) log.Info("Repository connection restored");
            _lastConnectError = null;
            return _conn;
        }
        catch (Exception e) when (e is NpgsqlException or OperationCanceledException or System.Net.Sockets.SocketException or RepositoryUnavailableException)
        {
            if (_conn is not null) { try { await _conn.DisposeAsync().ConfigureAwait(false); } catch (Exception) { /* gone anyway */ } }
            _conn = null;
            _lastConnectError = e is RepositoryUnavailableException ? e.Message
                : $"no connection to repository server {Dsn.Describe(_csb)}: {PgSession.Describe(e)}";
            _lastConnectFailureUtc = CurrentUtc;
            throw new RepositoryUnavailableException(_lastConnectError);
        }
    }

    /// <summary>
    /// The DSN may reach another database than at start (a host list's other member, a DNS name moved): nothing
    /// goes there; what the node reads is spooled for the repository it started on, as during an outage.
    /// </summary>
    async Task CheckIdentityAsync(NpgsqlConnection conn, CancellationToken ct)
    {
        if (_identity is null) return;
        var now = await RepositoryQueries.IdentityAsync(conn, ct).ConfigureAwait(false);
        if (now != _identity)
            throw new RepositoryUnavailableException(
                $"the repository DSN {Dsn.Describe(_csb)} now reaches another database (system identifier and database oid {now ?? "unknown"}, " +
                $"{_identity} at start): nothing is stored there; restart the node to collect into it");
    }

    /// <summary>
    /// After a failure: a broken connection is dropped; a working one may still be inside the failed
    /// transaction, which is rolled back so that the next piece of work starts clean.
    /// </summary>
    async Task ResetConnectionAsync()
    {
        if (_conn is null) return;
        if (!PgSession.IsBroken(_conn))
        {
            try
            {
                using var cts = PgSession.Timeout(settings.ConnectTimeout);
                await PgSession.ExecAsync(_conn, "ROLLBACK", cts.Token).ConfigureAwait(false); // a warning only when none is open
                return;
            }
            catch (Exception) { /* then it is broken after all */ }
        }
        try { await _conn.DisposeAsync().ConfigureAwait(false); } catch (Exception) { /* gone anyway */ }
        _conn = null;
    }

    /// <summary>
    /// A transaction left open by a collector that died without closing its connection (a host that lost
    /// power) must not hold powa_snapshot_metas locks until TCP notices: the repository ends it after a
    /// while (a store never waits on a remote, so a minute is plenty), and probes the connection every 30 s.
    /// </summary>
    static readonly IReadOnlyDictionary<string, string> RepositorySessionSettings =
        PgSession.DeadPeerSettings(TimeSpan.FromSeconds(60));
}
