using Npgsql;
using NpgsqlTypes;
using PowaCluster.Collector.Staging;

namespace PowaCluster.Collector.Postgres;

public enum StoreOutcome
{
    /// <summary>Committed: the data, powa_take_snapshot and the errors.</summary>
    Stored,

    /// <summary>
    /// Nothing was written: another collector holds the server's snapshot right now, or one taken less than half
    /// an interval from this one is stored already (SkipReason says which).
    /// </summary>
    Skipped,

    /// <summary>
    /// Nothing was written: the remote's powa (when read) and the repository's (now) are of another major.minor,
    /// so their tables differ (an ALTER EXTENSION powa UPDATE on one side); SkipReason says which versions.
    /// </summary>
    Refused,

    /// <summary>
    /// Nothing was written: the stage is not what a collector writes (SkipReason says why: rows of another
    /// server, a target that is not a table name). Storing it later would not help.
    /// </summary>
    Rejected,
}

/// <summary>What storing a stage did; Plan is what the server's next snapshot reads.</summary>
/// <param name="Fenced">Skipped by the fence (one taken too close to, or for a spooled one before, the last
/// stored one), not by the lock: storing it later would not help.</param>
/// <param name="RepositoryPowa">the repository's powa version, read in the store's transaction (null: not read)</param>
/// <param name="Sequence">the server's coalesce_seq after this store (ReplaceErrors); null when not stored</param>
public sealed record StoreResult(StoreOutcome Outcome, SnapshotPlan Plan, int TakeSnapshotErrors,
    IReadOnlyList<string> Errors, string? SkipReason = null, bool Fenced = false, string? RepositoryPowa = null, long? Sequence = null);

/// <summary>
/// Stores a staged snapshot in one repository transaction, at full speed: the remote is not involved.
/// Fast path, 2 + 2 per datasource with rows round trips: BEGIN with the NOWAIT lock of the server's
/// powa_snapshot_metas row (the lock powa_take_snapshot takes to refuse concurrent snapshots, taken first:
/// two collectors never store one server at once, whatever the cluster believes), a binary COPY into each
/// <c>*_src_tmp</c> table, then powa_take_snapshot, the errors, the next datasources and COMMIT in one batch.
/// If anything fails on the way, the transaction is rolled back and the stage stored again on the slow path,
/// a savepoint per step as the reference does, so that one failure is recorded and the rest stored; a failed
/// powa_take_snapshot rolls the copied rows back too, so nothing is left in the <c>*_tmp</c> tables.
/// </summary>
public static class SnapshotStore
{
    public static async Task<StoreResult> StoreAsync(PowaSql sql, NpgsqlConnection conn, SnapshotStage stage, CancellationToken ct)
    {
        try
        {
            try
            {
                return await StoreFastAsync(sql, conn, stage, ct).ConfigureAwait(false);
            }
            catch (PostgresException e) when (e.SqlState != PostgresErrorCodes.LockNotAvailable && !PgSession.IsBroken(conn))
            {
                await RollbackAsync(conn, ct).ConfigureAwait(false);
                return await StoreSlowAsync(sql, conn, stage, ct).ConfigureAwait(false);
            }
        }
        catch (StageRejectedException e) when (!PgSession.IsBroken(conn))
        {
            await RollbackAsync(conn, ct).ConfigureAwait(false);
            return new StoreResult(StoreOutcome.Rejected, SnapshotPlan.Empty, 0, [], e.Message);
        }
    }

    static async Task<StoreResult> StoreFastAsync(PowaSql sql, NpgsqlConnection conn, SnapshotStage stage, CancellationToken ct)
    {
        var (skipped, repositoryPowa, resolved, sequence) = await BeginAsync(sql, conn, stage, ct).ConfigureAwait(false);
        if (skipped is not null) return skipped;
        var (targets, errors) = Usable(stage, resolved);
        foreach (var (ds, target) in targets)
            await CopyInAsync(conn, stage, ds, target, ct).ConfigureAwait(false);
        var batch = new NpgsqlBatch(conn);
        await using var batchScope = batch.ConfigureAwait(false);
        batch.BatchCommands.Add(TakeSnapshotCommand(sql, stage.SrvId));
        foreach (var c in AfterTakeSnapshotCommands(sql, stage, targets)) batch.BatchCommands.Add(c);
        if (errors.Count > 0) batch.BatchCommands.Add(AppendErrorsCommand(sql, stage.SrvId, errors));
        foreach (var c in PlanCommands(sql, stage.SrvId, stage.ServerVersionNum)) batch.BatchCommands.Add(c);
        batch.BatchCommands.Add(new NpgsqlBatchCommand("COMMIT"));
        // The reader has one result per statement that returns rows: the UPDATE and the COMMIT have none.
        var r = await batch.ExecuteReaderAsync(ct).ConfigureAwait(false);
        await using var rScope = r.ConfigureAwait(false);
        var takeErrors = await ReadTakeSnapshotAsync(r, ct).ConfigureAwait(false);
        await r.NextResultAsync(ct).ConfigureAwait(false);
        var next = await ReadPlanAsync(sql, r, ct).ConfigureAwait(false);
        while (await r.NextResultAsync(ct).ConfigureAwait(false)) { } // the COMMIT: an error there throws
        return new StoreResult(StoreOutcome.Stored, next, takeErrors, errors, RepositoryPowa: repositoryPowa, Sequence: sequence + 1);
    }

    static async Task<StoreResult> StoreSlowAsync(PowaSql sql, NpgsqlConnection conn, SnapshotStage stage, CancellationToken ct)
    {
        var (skipped, repositoryPowa, resolved, sequence) = await BeginAsync(sql, conn, stage, ct).ConfigureAwait(false);
        if (skipped is not null) return skipped;
        var (targets, errors) = Usable(stage, resolved);
        await ExecAsync(conn, "SAVEPOINT copies", ct).ConfigureAwait(false);
        foreach (var (ds, target) in targets)
        {
            await ExecAsync(conn, "SAVEPOINT data", ct).ConfigureAwait(false);
            try { await CopyInAsync(conn, stage, ds, target, ct).ConfigureAwait(false); }
            catch (PostgresException e)
            {
                await ExecAsync(conn, "ROLLBACK TO SAVEPOINT data", ct).ConfigureAwait(false);
                errors.Add($"Error while inserting data of {ds.Name} into {target}: {PgSession.Describe(e)}");
            }
        }
        var takeErrors = 0;
        try
        {
            var cmd = new NpgsqlBatch(conn) { BatchCommands = { TakeSnapshotCommand(sql, stage.SrvId) } };
            await using var cmdScope = cmd.ConfigureAwait(false);
            foreach (var c in AfterTakeSnapshotCommands(sql, stage, targets)) cmd.BatchCommands.Add(c);
            var r = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
            await using var rScope = r.ConfigureAwait(false);
            takeErrors = await ReadTakeSnapshotAsync(r, ct).ConfigureAwait(false);
            while (await r.NextResultAsync(ct).ConfigureAwait(false)) { }
            sequence++;
        }
        catch (PostgresException e)
        {
            // Nothing of this snapshot stays in the *_tmp tables; the reference resets the errors by hand,
            // as powa_take_snapshot did not.
            await ExecAsync(conn, "ROLLBACK TO SAVEPOINT copies", ct).ConfigureAwait(false);
            await RepositoryQueries.ReportErrorsAsync(sql, conn, stage.SrvId, [], replace: true, ct).ConfigureAwait(false);
            errors.Add($"Error while taking snapshot for server {stage.SrvId}: {PgSession.Describe(e)}");
        }
        if (errors.Count > 0)
        {
            await ExecAsync(conn, "SAVEPOINT metas", ct).ConfigureAwait(false);
            try { await RepositoryQueries.ReportErrorsAsync(sql, conn, stage.SrvId, errors, replace: false, ct).ConfigureAwait(false); }
            catch (PostgresException) { await ExecAsync(conn, "ROLLBACK TO SAVEPOINT metas", ct).ConfigureAwait(false); }
        }
        var next = await GetPlanAsync(sql, conn, stage.SrvId, stage.ServerVersionNum, ct).ConfigureAwait(false);
        await ExecAsync(conn, "COMMIT", ct).ConfigureAwait(false);
        return new StoreResult(StoreOutcome.Stored, next, takeErrors, errors, RepositoryPowa: repositoryPowa, Sequence: sequence);
    }

    /// <summary>
    /// BEGIN, the NOWAIT lock and the transaction's application_name in one round trip; a Skipped result when
    /// another collector holds the lock, or when a snapshot taken less than half an interval from this one (10 s
    /// for a forced one) is stored already: at most one snapshot per server and interval, whatever the cluster
    /// does (two clusters formed side by side, a frozen node that wakes and fires its overdue tick, an old
    /// collector still running). The times compared are when each snapshot was taken (SetSnapshotTime), so a
    /// queue of snapshots read an interval apart and stored back to back passes. A Refused result when the
    /// repository's powa (read in the same round trip) cannot take what the remote's gave (VersionProblem).
    /// Each datasource with rows gets its table from the repository's catalog (ResolveTargets), never from the
    /// stage's text: a StageRejectedException when a target is not even a table name, an error for that
    /// datasource (the others stored) when it names no *_src_tmp table of an extension there.
    /// </summary>
    static async Task<(StoreResult? Skipped, string? RepositoryPowa, List<(StagedDatasource Ds, string Target)> Targets, long Sequence)> BeginAsync(
        PowaSql sql, NpgsqlConnection conn, SnapshotStage stage, CancellationToken ct)
    {
        var copied = stage.Datasources.Where(d => d.HasRows).ToList();
        foreach (var ds in copied)
            if (!QualifiedName.IsMatch(ds.Target))
                throw new StageRejectedException($"the target of {LogSafe(ds.Name)} is not a table name ({LogSafe(ds.Target)})");
        var batch = new NpgsqlBatch(conn)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand("BEGIN"),
                new NpgsqlBatchCommand(sql.LockServer)
                    { Parameters = { new() { Value = stage.SrvId } } },
                new NpgsqlBatchCommand("SELECT pg_catalog.set_config('application_name', $1, true)")
                    { Parameters = { new() { Value = $"PoWA collector - repo_conn for worker {stage.ServerName}" } } },
                new NpgsqlBatchCommand(ResolveTargets)
                    { Parameters = { new() { Value = copied.Select(d => d.Target).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text } } },
            },
        };
        await using var batchScope = batch.ConfigureAwait(false);
        var targets = new List<(StagedDatasource, string)>(copied.Count);
        DateTime? last = null;
        var frequency = 0;
        string? repositoryPowa = null, serverNow = null;
        long sequence = 0;
        try
        {
            var r = await batch.ExecuteReaderAsync(ct).ConfigureAwait(false);
            await using (r.ConfigureAwait(false))
            {
                if (await r.ReadAsync(ct).ConfigureAwait(false))
                {
                    var snapts = r.GetFieldValue<DateTime>(0); // -infinity (never) reads as DateTime.MinValue
                    if (snapts != DateTime.MinValue && snapts != DateTime.MaxValue) last = snapts.ToUniversalTime();
                    frequency = r.GetInt32(1);
                    repositoryPowa = r.IsDBNull(2) ? null : r.GetString(2);
                    serverNow = r.GetString(3);
                    sequence = r.GetInt64(4);
                }
                await r.NextResultAsync(ct).ConfigureAwait(false); // set_config
                await r.NextResultAsync(ct).ConfigureAwait(false);
                for (var i = 0; await r.ReadAsync(ct).ConfigureAwait(false); i++)
                    targets.Add((copied[i], r.IsDBNull(0) ? "" : r.GetString(0)));
                while (await r.NextResultAsync(ct).ConfigureAwait(false)) { }
            }
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.LockNotAvailable)
        {
            await RollbackAsync(conn, ct).ConfigureAwait(false);
            return (new StoreResult(StoreOutcome.Skipped, SnapshotPlan.Empty, 0, [], new SnapshotInProgressException(stage.SrvId).Message), null, targets, sequence);
        }
        // A spooled snapshot goes only to the server it was read off: the row may have been deleted and its id
        // given to another server since (or its host changed). Moved aside, not stored.
        if (stage.FromSpool && serverNow is not null && serverNow != stage.ServerName)
            throw new StageRejectedException($"it was read off {LogSafe(stage.ServerName)}, but server {stage.SrvId} is {LogSafe(serverNow)} in powa_servers now"); // StoreAsync rolls back
        if (VersionProblem(sql, stage.RemotePowa, repositoryPowa) is { } refused)
        {
            await RollbackAsync(conn, ct).ConfigureAwait(false);
            return (new StoreResult(StoreOutcome.Refused, SnapshotPlan.Empty, 0, [], refused, RepositoryPowa: repositoryPowa), repositoryPowa, targets, sequence);
        }
        if (TooClose(stage, last, frequency) is { } reason)
        {
            await RollbackAsync(conn, ct).ConfigureAwait(false);
            return (new StoreResult(StoreOutcome.Skipped, SnapshotPlan.Empty, 0, [], reason, Fenced: true, RepositoryPowa: repositoryPowa, Sequence: sequence), repositoryPowa, targets, sequence);
        }
        return (null, repositoryPowa, targets, sequence);
    }

    /// <summary>
    /// The datasources to copy, and the stage's errors with one more for each whose name is no *_src_tmp table
    /// of the repository (an extension dropped there since the plan was read, or a name a file made up):
    /// nothing goes anywhere for that one, and the others are stored.
    /// </summary>
    static (List<(StagedDatasource Ds, string Target)> Targets, List<string> Errors) Usable(SnapshotStage stage,
        List<(StagedDatasource Ds, string Target)> resolved)
    {
        var errors = new List<string>(stage.Errors);
        foreach (var (ds, _) in resolved.Where(t => t.Target.Length == 0))
            errors.Add($"Error while inserting data of {LogSafe(ds.Name)}: {LogSafe(ds.Target)} is not a *_src_tmp table of the repository");
        return (resolved.Where(t => t.Target.Length > 0).ToList(), errors);
    }

    /// <summary>A schema-qualified table name, each part a plain or a double-quoted identifier: nothing else reaches the SQL below.</summary>
    static readonly System.Text.RegularExpressions.Regex QualifiedName = new(
        """^(?:"(?:[^"\x00]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)\.(?:"(?:[^"\x00]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)$""");

    /// <summary>
    /// $1 the stage's targets, in order: for each, the *_src_tmp table (of an extension) it names, quoted as the
    /// repository quotes it, or NULL. The COPYs use these texts.
    /// </summary>
    const string ResolveTargets =
        "SELECT (SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) FROM pg_catalog.pg_class c " +
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = pg_catalog.to_regclass(t.name) " +
        $"AND {PowaSql.IsStagingTable}) " +
        "FROM unnest($1::text[]) WITH ORDINALITY t(name, i) ORDER BY t.i";

    /// <summary>A text from a stage, for a message: at most 200 characters, no control character.</summary>
    static string LogSafe(string s) => Configuration.LogText.OneLine(s, 200);

    /// <summary>
    /// Why a stage read off a remote with powa <paramref name="remotePowa"/> cannot go into a repository whose powa
    /// is <paramref name="repositoryPowa"/> now, or null: another major.minor (their tables differ), powa gone from
    /// the remote, or a repository of another major than this node's SQL (a new repository: the node must restart).
    /// </summary>
    public static string? VersionProblem(PowaSql sql, string? remotePowa, string? repositoryPowa)
    {
        if (PowaVersion.Parse(repositoryPowa) is not { } repository) return null; // not read (a repository without powa fails later, clearly)
        if (repository.Major != sql.Version.Major)
            return $"the repository now has powa {repository}, of another major version than when this node started ({sql.Version}): " +
                   "restart powa-cluster";
        if (remotePowa is null) return null; // a spool file of an earlier build: not known
        return PowaVersion.Parse(remotePowa) is { } remote ? remote.MismatchWith(repository)
            : "the powa extension is not installed on the remote server any more";
    }

    /// <summary>
    /// Why a snapshot taken at stage.TakenAtUtc is one too many, or null. One taken before the last stored one
    /// is refused too, spooled or live: stored, the server's history would go back in time (another node
    /// stored later snapshots of this server first: a hand-off's queue after its new owner's snapshot, a spool
    /// replayed late; or this one was stored before a crash deleted its file). Both times are the remote's
    /// clock (SnapshotReader), so no node's clock takes part.
    /// </summary>
    public static string? TooClose(SnapshotStage stage, DateTime? lastTakenUtc, int frequencySeconds)
    {
        if (lastTakenUtc is not { } last) return null;
        if (stage.TakenAtUtc <= last)
            return $"the {(stage.FromSpool ? "spooled " : "")}snapshot of server {stage.SrvId} taken at {stage.TakenAtUtc:HH:mm:ss.fff} UTC is not after " +
                   $"the last one stored ({last:HH:mm:ss.fff} UTC): stored, the history would go back in time";
        var limit = stage.Forced ? TimeSpan.FromSeconds(10) : TimeSpan.FromSeconds(frequencySeconds / 2.0);
        var gap = (stage.TakenAtUtc - last).Duration();
        return gap < limit
            ? $"a snapshot of server {stage.SrvId} taken at {last:HH:mm:ss.fff} UTC is stored already, {gap.TotalSeconds:F1} s from this one " +
              $"(less than {(stage.Forced ? "10 s, for a forced snapshot" : "half its interval")}): a forced snapshot, or another collector on this server"
            : null;
    }

    /// <summary>
    /// One datasource into <paramref name="target"/> (the repository's name for it), through a CopyRowCheck: a
    /// row of another server cancels the COPY (nothing of it reaches the table) and throws StageRejectedException.
    /// </summary>
    static async Task CopyInAsync(NpgsqlConnection conn, SnapshotStage stage, StagedDatasource ds, string target, CancellationToken ct)
    {
        var check = new CopyRowCheck(stage.SrvId, ds.Text, LogSafe(ds.Name));
        // A datasource whose types have no binary round trip (DatabaseReader.NeedsText): its UTF-8 text COPY
        // bytes go to the text import's own stream as they are. Never dispose the TextWriter: its Dispose
        // is synchronous, and a blocking read on a socket thread stalls every connection of the node.
        var copy = ds.Text
            ? (NpgsqlRawCopyStream)((StreamWriter)await conn.BeginTextImportAsync($"COPY {target} FROM STDIN", ct).ConfigureAwait(false)).BaseStream
            : await conn.BeginRawBinaryCopyAsync($"COPY {target} FROM STDIN (FORMAT binary)", ct).ConfigureAwait(false);
        await using var copyScope = copy.ConfigureAwait(false);
        try
        {
            await stage.CopyToAsync(ds, new CheckedCopyStream(copy, check), ct).ConfigureAwait(false);
            check.Complete();
        }
        catch (StageRejectedException)
        {
            await copy.CancelAsync().ConfigureAwait(false); // CopyFail: nothing of this COPY is kept
            throw;
        }
    }

    static NpgsqlBatchCommand TakeSnapshotCommand(PowaSql sql, int srvid) =>
        new(sql.TakeSnapshot) { Parameters = { new() { Value = srvid } } };

    /// <summary>
    /// Right after powa_take_snapshot: the snapshot's time is when it was taken (SetSnapshotTime); and a
    /// datasource whose snapshot function failed inside powa_take_snapshot (which catches it and rolls that
    /// function back) leaves its rows in its *_src_tmp table, which would be stored with the next snapshot:
    /// they are deleted (when powa_take_snapshot reported an error: PowaSql.LeftoverCleanup).
    /// </summary>
    static IEnumerable<NpgsqlBatchCommand> AfterTakeSnapshotCommands(PowaSql sql, SnapshotStage stage,
        IEnumerable<(StagedDatasource Ds, string Target)> targets)
    {
        yield return new NpgsqlBatchCommand(sql.SetSnapshotTime)
        { Parameters = { new() { Value = stage.SrvId }, new() { Value = stage.TakenAtUtc, NpgsqlDbType = NpgsqlDbType.TimestampTz } } };
        foreach (var target in targets.Select(t => t.Target).Distinct())
            yield return new NpgsqlBatchCommand(PowaSql.LeftoverCleanup(target)) { Parameters = { new() { Value = stage.SrvId } } };
    }

    static async Task<int> ReadTakeSnapshotAsync(NpgsqlDataReader r, CancellationToken ct) =>
        await r.ReadAsync(ct).ConfigureAwait(false) && !r.IsDBNull(0) ? r.GetInt32(0) : 0;

    static NpgsqlBatchCommand AppendErrorsCommand(PowaSql sql, int srvid, IReadOnlyList<string> errors) =>
        new(sql.AppendErrors)
        {
            Parameters =
            {
                new() { Value = srvid },
                new() { Value = errors.ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text },
            },
        };

    /// <summary>The queries of a server's snapshot plan: its global datasources, then (PoWA 5) its per-database ones.</summary>
    static IEnumerable<NpgsqlBatchCommand> PlanCommands(PowaSql sql, int srvid, int serverVersionNum)
    {
        yield return new NpgsqlBatchCommand(sql.Datasources) { Parameters = { new() { Value = srvid } } };
        if (sql.PerDatabaseDatasources is { } perDb)
            yield return new NpgsqlBatchCommand(perDb) { Parameters = { new() { Value = srvid }, new() { Value = serverVersionNum } } };
    }

    /// <summary>Reads the results of PlanCommands; the reader stands on the first of them.</summary>
    static async Task<SnapshotPlan> ReadPlanAsync(PowaSql sql, NpgsqlDataReader r, CancellationToken ct)
    {
        var global = new List<Datasource>();
        while (await r.ReadAsync(ct).ConfigureAwait(false))
            global.Add(new Datasource(r.GetString(0), r.GetBoolean(1), r.IsDBNull(2) ? null : r.GetString(2),
                r.IsDBNull(3) ? null : r.GetString(3), r.GetString(4), r.IsDBNull(5) ? null : r.GetString(5)));
        var perDb = new List<DbDatasource>();
        if (sql.PerDatabaseDatasources is not null)
        {
            await r.NextResultAsync(ct).ConfigureAwait(false);
            while (await r.ReadAsync(ct).ConfigureAwait(false))
                perDb.Add(new DbDatasource(r.GetString(1), r.GetBoolean(0), r.GetString(2), r.IsDBNull(5) ? null : r.GetString(5),
                    r.GetFieldValue<string[]>(6), r.IsDBNull(3) ? null : r.GetFieldValue<string[]>(3),
                    r.IsDBNull(4) ? [] : r.GetFieldValue<string[]>(4)));
        }
        return new SnapshotPlan(global, perDb);
    }

    public static async Task<SnapshotPlan> GetPlanAsync(PowaSql sql, NpgsqlConnection conn, int srvid, int serverVersionNum, CancellationToken ct)
    {
        var batch = new NpgsqlBatch(conn);
        await using var batchScope = batch.ConfigureAwait(false);
        foreach (var c in PlanCommands(sql, srvid, serverVersionNum)) batch.BatchCommands.Add(c);
        var r = await batch.ExecuteReaderAsync(ct).ConfigureAwait(false);
        await using var rScope = r.ConfigureAwait(false);
        return await ReadPlanAsync(sql, r, ct).ConfigureAwait(false);
    }

    static Task RollbackAsync(NpgsqlConnection conn, CancellationToken ct) => ExecAsync(conn, "ROLLBACK", ct);

    static Task ExecAsync(NpgsqlConnection conn, string sql, CancellationToken ct) => PgSession.ExecAsync(conn, sql, ct);
}
