using PowaCluster.Collector.Postgres;

namespace PowaCluster.Collector.Actors;

/// <summary>
/// What a ServerState decides and its ServerCollector does: the effects, as data. Snapshots read are named
/// by their sequence; the actor holds their stages (memory, files) and the state only their order.
/// </summary>
public abstract record ServerAction;

/// <summary>The lifecycle of a server's entity; ServerState.Allowed says which moves are legal.</summary>
public enum ServerPhase { New, Loading, Connecting, Restoring, Collecting, Waiting, Stopping, Stopped }

public enum NoteLevel { Debug, Info, Warning, Error }

public static class ServerDo
{
    /// <summary>The node's spool of this server is replayed by this entity from now on (the keeper leaves it).</summary>
    public sealed record ClaimSpool : ServerAction;
    public sealed record StartLease : ServerAction;
    /// <summary>Read the server's own powa_servers row through the node's writers (ServerRead answers).</summary>
    public sealed record ReadRow : ServerAction;
    public sealed record RetryRowRead(TimeSpan After) : ServerAction;
    /// <summary>A connection slot from the node's ConnectRamp (ConnectGranted answers; granted at once without a ramp).</summary>
    public sealed record AskToConnect(int Generation, TimeSpan Frequency) : ServerAction;
    /// <summary>Open the remote connection and check powa on it, against the repository's (Connected or ConnectFailed).</summary>
    public sealed record Open(int Generation, PowaVersion RepositoryPowa) : ServerAction;
    /// <summary>The ramp's slot goes back: the attempt is over.</summary>
    public sealed record ConnectDone(int Generation) : ServerAction;
    /// <summary>Keep the connection just opened and restore the schedule from the repository (ScheduleRestored answers).</summary>
    public sealed record Restore : ServerAction;
    public sealed record CloseRemote : ServerAction;
    public sealed record ScheduleReconnect(TimeSpan After) : ServerAction;
    public sealed record CancelReconnect : ServerAction;
    public sealed record ScheduleTick(DateTime DueUtc, int Generation) : ServerAction;
    /// <summary>Read a snapshot into a stage (to the spool with ToSpool); SnapshotRead or SnapshotReadFailed answers.</summary>
    public sealed record Read(long Sequence, bool Forced, bool ToSpool, SnapshotPlan Plan, IReadOnlySet<string> Guarded,
        CatalogRefresh? Refresh) : ServerAction;
    /// <summary>A snapshot read goes to the writers (with a watchdog).</summary>
    public sealed record Store(long Sequence) : ServerAction;
    /// <summary>The spool's oldest goes to the writers, stored as Sequence (ReplayNotTaken when the keeper has it).</summary>
    public sealed record Replay(long Sequence) : ServerAction;
    /// <summary>
    /// Handed off: these go to the node's writers, which store (or spool) them with no one to answer; with the
    /// one at a writer already, Left snapshots from OldestUtc on are this node's to store (the node's SpoolKeeper
    /// tells the server's new entity, which stores none of its own before them).
    /// </summary>
    public sealed record HandOver(IReadOnlyList<long> Sequences, DateTime OldestUtc, int Left) : ServerAction;
    /// <summary>These go to the spool, in order (QueueSpooled answers with how many were written).</summary>
    public sealed record SpoolQueue(IReadOnlyList<long> Sequences) : ServerAction;
    public sealed record DropStages(IReadOnlyList<long> Sequences) : ServerAction;
    public sealed record CancelWatchdog : ServerAction;
    /// <summary>An error outside a snapshot, into powa_snapshot_metas.errors unless a newer snapshot's are there.</summary>
    public sealed record Report(string Error, long? SeenSequence) : ServerAction;
    public sealed record SaveVersions : ServerAction;
    public sealed record StartHandOffDeadline(TimeSpan After) : ServerAction;
    /// <summary>The server's metrics are labelled with this alias from now on.</summary>
    public sealed record Track(string? Alias) : ServerAction;
    /// <summary>powa_snapshots_total by outcome.</summary>
    public sealed record Count(string Outcome, long N = 1) : ServerAction;
    public sealed record CountConnectFailure : ServerAction;
    public sealed record Say(NoteLevel Level, string Text) : ServerAction;
    public sealed record Stop : ServerAction;
}
