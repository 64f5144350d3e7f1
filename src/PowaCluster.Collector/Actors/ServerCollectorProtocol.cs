using PowaCluster.Collector.Configuration;

namespace PowaCluster.Collector.Actors;

/// <summary>Every message routed to a ServerCollector entity carries its srvid (the entity id).</summary>
public interface IServerMessage
{
    int SrvId { get; }
}

/// <summary>
/// Idempotent: starts the entity, or pushes a changed config (a connection change reconnects). Also renews its
/// lease. With Refresh (RELOAD, SIGHUP): a server waiting to reconnect tries now, a connected one saves its
/// versions again.
/// </summary>
public sealed record EnsureCollecting(ServerConfig Config, bool Refresh = false) : IServerMessage
{
    public int SrvId => Config.SrvId;
}

/// <summary>The server was removed or deactivated: finish any snapshot in flight, then stop.</summary>
public sealed record StopCollecting(int SrvId) : IServerMessage;

public sealed record GetServerStatus(int SrvId) : IServerMessage;

/// <summary>Start a snapshot now, unless one is running or one started less than 10 s ago.</summary>
public sealed record ForceSnapshot(int SrvId) : IServerMessage;

/// <summary>Message: powa-collector 1.3.1's words (powa-web 5 shows them), or why the server cannot be snapshotted.</summary>
public sealed record ForceSnapshotResult(int SrvId, bool Started, string Message);

/// <summary>REFRESH_DB_CAT: the server's next snapshot reads the catalogs of these databases (every one when empty).</summary>
public sealed record RefreshCatalogs(int SrvId, IReadOnlyList<string> DbNames) : IServerMessage;

public sealed record RefreshCatalogsResult(int SrvId, bool Registered, string Message);

public sealed record ServerStatus(
    int SrvId,
    string Status,
    string? Node,
    DateTimeOffset? LastSnapshot,
    string? LastError,
    long Snapshots,
    long FailedSnapshots);

/// <summary>The status strings powa-web shows (design brief, section 2).</summary>
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
internal sealed record ConnectFailed(int Generation, string Error);
internal sealed record Reconnect { public static readonly Reconnect Instance = new(); }
internal sealed record Tick(int Generation);
internal sealed record LeaseCheck { public static readonly LeaseCheck Instance = new(); }
internal sealed record StoreWatchdog(long Sequence);
