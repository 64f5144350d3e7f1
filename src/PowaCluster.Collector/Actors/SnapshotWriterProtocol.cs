using Akka.Actor;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Postgres;
using PowaCluster.Collector.Spooling;
using PowaCluster.Collector.Staging;

namespace PowaCluster.Collector.Actors;

// ---- Work for the node's writer pool: one repository transaction each, in FIFO order ----------------

/// <summary>Repository work queued on the pool. Node-local: none of it crosses the network.</summary>
public interface IWriterWork
{
    int SrvId { get; }
}

/// <summary>
/// Store a complete stage (COPY into *_src_tmp, powa_take_snapshot, errors, commit), or with Replay a spooled
/// snapshot, read back from Spool (Stage is null then). The writer owns the stage from then on and disposes it.
/// When the repository fails (unreachable, timed out, shutting down), a stage is written to Spool (when set)
/// and a replayed snapshot stays there; a replayed snapshot's file is deleted after the commit. Answered with
/// SnapshotStored or SnapshotNotStored.
/// </summary>
public sealed record StoreSnapshot(SnapshotStage? Stage, long Sequence, IActorRef ReplyTo, ServerSpool? Spool = null,
    SpoolEntry? Replay = null) : IWriterWork
{
    public int SrvId => Stage?.SrvId ?? Replay!.SrvId;

    /// <summary>A spooled snapshot: the pool lets live ones go first.</summary>
    public bool IsReplay => Replay is not null;
}

/// <param name="QueueWait">how long the stage waited for a writer</param>
/// <param name="Duration">how long the repository transaction took</param>
/// <param name="Replayed">the spooled snapshot this was (its file is gone when Result is Stored, or fenced)</param>
public sealed record SnapshotStored(int SrvId, long Sequence, StoreResult Result, TimeSpan QueueWait, TimeSpan Duration,
    SpoolEntry? Replayed = null);

/// <summary>
/// The repository could not be reached, or refused the transaction; Error says why (no password).
/// Spooled: the snapshot is in the spool (the repository failed, not the snapshot), to be replayed; otherwise it is
/// lost, and SpoolError says why it could not be spooled when it was to be (a full or read-only disk).
/// </summary>
public sealed record SnapshotNotStored(int SrvId, long Sequence, string Error, TimeSpan QueueWait, bool Spooled = false,
    SpoolEntry? Replayed = null, string? SpoolError = null);

/// <summary>
/// After (re)connecting to a remote: save its versions, read when it was last snapshotted and its enabled
/// datasources, in one short transaction. Answered with ScheduleRestored.
/// </summary>
public sealed record RestoreSchedule(int SrvId, RemoteVersions Versions, IActorRef ReplyTo) : IWriterWork;

/// <summary>Last is null and Error set when the repository could not be read.</summary>
public sealed record ScheduleRestored(int SrvId, LastSnapshot? Last, SnapshotPlan Plan, string? Error);

/// <summary>
/// An entity's own powa_servers row (active: id > 0 and frequency > 0), with its password: read on the node
/// that collects it, so that no password crosses the network. Answered with ServerRead.
/// </summary>
public sealed record ReadServer(int SrvId, IActorRef ReplyTo) : IWriterWork;

/// <summary>
/// Row is null when the server is not active (removed or deactivated); Error set when the repository could not be
/// read; RepositoryPowa: the repository's powa version now (its entity checks the remote's against it).
/// </summary>
public sealed record ServerRead(int SrvId, ServerRow? Row, string? Error, string? RepositoryPowa = null);

/// <summary>
/// The coordinator's resync: every active server's row, without its password (the entity reads its own). On
/// a writer's connection, not on the coordinator's own (which answers powa-web): a flood of NOTIFY requests
/// cannot delay it, nor it them. Answered with ServersRead.
/// </summary>
/// <param name="Passwords">with the passwords: the node's StateKeeper's read, which never leaves the node</param>
public sealed record LoadServers(IActorRef ReplyTo, bool Passwords = false) : IWriterWork
{
    public int SrvId => 0;
}

/// <summary>Rows is empty and Error set when the repository could not be read.</summary>
public sealed record ServersRead(IReadOnlyList<ServerRow> Rows, string? Error);

/// <summary>RELOAD: save a connected server's versions again. Not answered.</summary>
public sealed record SaveVersions(int SrvId, RemoteVersions Versions) : IWriterWork;

/// <summary>
/// An error outside a snapshot (a connection failure): replaces the server's errors, as the reference does,
/// unless a snapshot was stored since the reporter's last look (<paramref name="SeenSequence"/>, the server's
/// coalesce_seq then; null: whatever). Answered to ReplyTo, when set, with ErrorsReported.
/// </summary>
public sealed record ReportErrors(int SrvId, IReadOnlyList<string> Errors, long? SeenSequence = null, IActorRef? ReplyTo = null) : IWriterWork;

/// <param name="Written">false: a newer snapshot's errors are there (or a store held the row)</param>
/// <param name="Sequence">the server's coalesce_seq now, when read</param>
public sealed record ErrorsReported(int SrvId, bool Written, long? Sequence);

/// <summary>SELECT 1 on a writer's connection, for /ready. Answered to the pool with RepositoryOutcome.</summary>
internal sealed record CheckRepository : IWriterWork
{
    public static readonly CheckRepository Instance = new();
    public int SrvId => 0;
}

/// <summary>
/// VACUUM (SKIP_LOCKED) the repository's *_src_tmp tables this role may vacuum: queued by the pool itself
/// (StagingUpkeep), not answered. Why: docs/architecture.md, "Staging tables".
/// </summary>
internal sealed record VacuumStaging : IWriterWork
{
    public static readonly VacuumStaging Instance = new();
    public int SrvId => 0;
}

// ---- Pool statistics and node health -------------------------------------------------------------

/// <summary>Answered with WritersDrained once no work is queued or running (the node stops: what its servers left is stored first).</summary>
public sealed record DrainWriters
{
    public static readonly DrainWriters Instance = new();
}

public sealed record WritersDrained
{
    public static readonly WritersDrained Instance = new();
}

/// <summary>Which of these servers still have work queued or being done at the writers: answered with WorkPendingFor.</summary>
public sealed record GetWorkPendingFor(IReadOnlyList<int> SrvIds);

/// <param name="Asked">the servers asked about (the others were not looked at)</param>
/// <param name="SrvIds">those of them with work at the writers</param>
public sealed record WorkPendingFor(IReadOnlyList<int> Asked, IReadOnlySet<int> SrvIds);

/// <summary>
/// The node stops and the repository did not store its queue in time: the live snapshots still queued go to
/// their servers' spools (replayed in order when the node starts again, or by the node that collects the server
/// then), the rest of the queue is dropped. Answered with UnstoredSpooled.
/// </summary>
public sealed record SpoolUnstored
{
    public static readonly SpoolUnstored Instance = new();
}

/// <param name="Spooled">snapshots written to the spool</param>
/// <param name="Lost">snapshots that could not be (no spool, or Error when it cannot be written)</param>
/// <param name="Storing">snapshots a writer is storing still (committed or rolled back with its connection)</param>
public sealed record UnstoredSpooled(int Spooled, int Lost, int Storing, string? Error);

public sealed record GetWriterPoolStats
{
    public static readonly GetWriterPoolStats Instance = new();
}

/// <summary>Queue statistics: how long work waits for a writer, how long writers are busy.</summary>
public sealed record WriterPoolStats(int Writers, int Busy, int Queued, long Dispatched, TimeSpan TotalWait, TimeSpan MaxWait,
    TimeSpan TotalBusy, long Stored);

/// <summary>Is the repository reachable from this node? Answered with RepositoryHealth.</summary>
public sealed record GetRepositoryHealth
{
    public static readonly GetRepositoryHealth Instance = new();
}

/// <summary>Reachable: a writer of this node has a working repository connection; otherwise Error says why.</summary>
public sealed record RepositoryHealth(bool Reachable, string? Error, DateTime CheckedAtUtc);

// ---- Between the pool and its writers ------------------------------------------------------------

internal sealed record AssignWork(IWriterWork Work, DateTime EnqueuedAtUtc);

/// <summary>A writer's latest word on its repository connection: opened (or a commit), or failed and why.</summary>
internal sealed record RepositoryOutcome(bool Ok, string? Error);

/// <summary>A writer is free again; Busy is how long its work took, Stored whether it committed a snapshot.</summary>
internal sealed record WriterIdle(IActorRef Writer, TimeSpan Busy, bool Stored);
