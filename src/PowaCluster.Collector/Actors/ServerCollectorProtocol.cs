using PowaCluster.Collector.Serialization;

namespace PowaCluster.Collector.Actors;

/// <summary>Every message routed to a ServerCollector entity carries its srvid (the entity id).</summary>
public interface IServerMessage
{
    int SrvId { get; }
}

/// <summary>
/// Idempotent: starts the entity, or tells it its powa_servers row changed. Also renews its lease. It carries
/// no connection setting and no password: the entity reads its own row from the repository (ReadServer)
/// when it starts and whenever RowVersion (the row's xmin) differs from the one it read, so a password
/// change never crosses the network. With Refresh (RELOAD, SIGHUP): the row is read again, then a server
/// waiting to reconnect tries now and a connected one saves its versions again.
/// </summary>
public sealed record EnsureCollecting(int SrvId, string RowVersion, bool Refresh = false) : IServerMessage, IWireMessage;

/// <summary>The server was removed or deactivated: finish any snapshot in flight, then stop.</summary>
public sealed record StopCollecting(int SrvId) : IServerMessage, IWireMessage;

public sealed record GetServerStatus(int SrvId) : IServerMessage, IWireMessage;

/// <summary>Start a snapshot now, unless one is running or one started less than 10 s ago.</summary>
public sealed record ForceSnapshot(int SrvId) : IServerMessage, IWireMessage;

/// <summary>Message: powa-collector 1.3.1's words (powa-web 5 shows them), or why the server cannot be snapshotted.</summary>
public sealed record ForceSnapshotResult(int SrvId, bool Started, string Message) : IWireMessage;

/// <summary>REFRESH_DB_CAT: the server's next snapshot reads the catalogs of these databases (every one when empty).</summary>
public sealed record RefreshCatalogs(int SrvId, IReadOnlyList<string> DbNames) : IServerMessage, IWireMessage;

public sealed record RefreshCatalogsResult(int SrvId, bool Registered, string Message) : IWireMessage;

public sealed record ServerStatus(
    int SrvId,
    string Status,
    string? Node,
    DateTimeOffset? LastSnapshot,
    string? LastError,
    long Snapshots,
    long FailedSnapshots,
    int SpooledSnapshots = 0,
    long SpooledBytes = 0,
    DateTimeOffset? OldestSpooled = null) : IWireMessage;

/// <summary>The status strings powa-web shows (powa-collector 1.3.1's words).</summary>
public static class CollectorStatus
{
    public const string Running = "running";
    public const string NoRemote = "no connection to remote server";
    public const string NoRepository = "no connection to repository server";
    public const string Stopping = "stopping";
    public const string Stopped = "stopped";
}

/// <summary>Sharding's stop message (passivation and hand-off): like StopCollecting, lets a snapshot finish.</summary>
public sealed record StopEntity
{
    public static readonly StopEntity Instance = new();
}

// ---- ServerCollector's own messages (to itself) ------------------------------------------------

internal sealed record Connected(int Generation, Npgsql.NpgsqlConnection Conn, PowaCluster.Collector.Postgres.RemoteVersions Versions);
/// <param name="Setup">the remote cannot be collected as it is set up (no powa, another version): not a network failure</param>
internal sealed record ConnectFailed(int Generation, string Error, bool Setup = false);
internal sealed record Reconnect { public static readonly Reconnect Instance = new(); }
internal sealed record Tick(int Generation);
internal sealed record RetryRead { public static readonly RetryRead Instance = new(); }
internal sealed record LeaseCheck { public static readonly LeaseCheck Instance = new(); }
/// <summary>A handed-off server whose snapshot is still being read at half the hand-off timeout stops anyway.</summary>
internal sealed record HandOffDeadline { public static readonly HandOffDeadline Instance = new(); }
internal sealed record StoreWatchdog(long Sequence);
/// <summary>Written to the spool from the queue; Left: those that could not be (Error says why), back in memory.</summary>
internal sealed record QueueSpooled(int Written, IReadOnlyList<(long Sequence, PowaCluster.Collector.Staging.SnapshotStage Stage)> Left, string? Error);

/// <summary>
/// From the SpoolKeeper of a node (Holder, its address) that holds spooled snapshots of this server, which is
/// collected elsewhere now (its shard moved during an outage). A server's snapshots are stored oldest first
/// whichever node holds them (the fence drops one older than the last stored): the entity answers the holder
/// of the oldest with BacklogTurn when that is older than anything it holds itself, and stores nothing of its
/// own meanwhile (its reads go to its spool). Sent again every sweep while the node holds some: the entity
/// forgets a holder it has not heard from for three sweeps. Sent when every member is 0.3.0 or later.
/// </summary>
public sealed record BacklogHeld(int SrvId, string Holder, DateTime OldestUtc, int Snapshots) : IServerMessage, IWireMessage;

/// <summary>The holder's backlog of this server is stored (or dropped): the entity may store its own.</summary>
public sealed record BacklogDrained(int SrvId, string Holder) : IServerMessage, IWireMessage;

/// <summary>
/// From the entity to the SpoolKeeper that holds the oldest of its server's snapshots: store them now, those
/// taken before UntilUtc (the oldest another node, or the entity, holds; null: all), then say what is left.
/// </summary>
public sealed record BacklogTurn(int SrvId, DateTime? UntilUtc = null) : IWireMessage;
