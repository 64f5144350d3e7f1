using Akka.Actor;
using Npgsql;
using PowaCluster.Collector.Postgres;

namespace PowaCluster.Collector.Actors;

// ---- Asking the pool for a writer ----------------------------------------------------------

/// <summary>Asks for one repository transaction for a snapshot; answered by SessionOpened or SessionFailed.</summary>
public sealed record RequestSnapshotSession(int SrvId, string ServerName, IActorRef Requester);

/// <summary>A short repository job (save versions, report an error, read the last snapshot time) in its own transaction.</summary>
public sealed record RunRepositoryJob(int SrvId, string What, Func<NpgsqlConnection, CancellationToken, Task<object?>> Job, IActorRef ReplyTo);

/// <summary>The result of a RunRepositoryJob: Result, or Error when it failed.</summary>
public sealed record RepositoryJobResult(int SrvId, string What, object? Result, string? Error);

public sealed record GetWriterPoolStats
{
    public static readonly GetWriterPoolStats Instance = new();
}

/// <summary>Queue statistics: how long snapshots wait for a writer.</summary>
public sealed record WriterPoolStats(int Writers, int Busy, int Queued, long Dispatched, TimeSpan TotalWait, TimeSpan MaxWait);

// ---- A snapshot session, between a ServerCollector and the writer it was given --------------

public sealed record SessionOpened(int SrvId, IActorRef Writer, IReadOnlyList<Datasource> Datasources, TimeSpan QueueWait);
public sealed record SessionFailed(int SrvId, string Error);

/// <summary>Another collector is snapshotting this server right now: this snapshot is skipped, nothing was written.</summary>
public sealed record SessionSkipped(int SrvId, string Reason);

/// <summary>The writer lost its repository connection in the middle of a session; the transaction is gone.</summary>
public sealed record SessionLost(int SrvId, string Error);

public sealed record BeginCopyIn(string QuerySource);
public sealed record CopyInReady(string QuerySource);
public sealed record CopyInFailed(string QuerySource, string Error);

/// <summary>
/// A bounded piece of remote COPY text output; the writer answers ChunkAck once it is written. The last one
/// (the remote export has ended) also ends the COPY: the writer answers CopyInDone instead, or ChunkAck with
/// the error when the data was refused.
/// </summary>
public sealed record CopyChunk(string Data, bool Last = false);
public sealed record ChunkAck(string? Error);

public sealed record EndCopyIn(bool Abort);
public sealed record CopyInDone(string QuerySource, string? Error);

/// <summary>Calls powa_take_snapshot, appends the collector's errors, commits.</summary>
public sealed record FinishSnapshot(IReadOnlyList<string> Errors);
public sealed record SnapshotCommitted(int SrvId, int TakeSnapshotErrors);

public sealed record AbortSession
{
    public static readonly AbortSession Instance = new();
}

// ---- Between the pool and its writers -------------------------------------------------------

internal sealed record AssignWork(object Work, DateTime EnqueuedAtUtc);

/// <summary>A writer's latest word on its repository connection: opened (or a snapshot committed), or failed and why.</summary>
internal sealed record RepositoryOutcome(bool Ok, string? Error);

// ---- Node health (the /ready endpoint) -------------------------------------------------------

/// <summary>Is the repository reachable from this node? Answered with RepositoryHealth.</summary>
public sealed record GetRepositoryHealth
{
    public static readonly GetRepositoryHealth Instance = new();
}

/// <summary>Reachable: a writer of this node has a working repository connection; otherwise Error says why.</summary>
public sealed record RepositoryHealth(bool Reachable, string? Error, DateTime CheckedAtUtc);
internal sealed record WriterIdle(IActorRef Writer);
