using PowaCluster.Collector.Postgres;

namespace PowaCluster.Collector.Actors;

/// <summary>
/// What a ServerCollector reports about its server (WORKERS_STATUS, powa-cluster status): its status word,
/// its last snapshot and last error, and how many snapshots it stored or lost. A plain class the entity
/// delegates to.
/// </summary>
public sealed class ServerRecord(DateTime startedUtc)
{
    public string Status { get; set; } = CollectorStatus.NoRemote;
    public string? LastError { get; private set; }
    public DateTimeOffset? LastSnapshot { get; private set; }
    public long Snapshots { get; private set; }
    public long Failed { get; private set; }

    /// <summary>The server's spool on this node (its backlog), for the metrics' gauges, when the node has a usable spool.</summary>
    public Spooling.ServerSpool? Backlog { get; set; }

    long _lastSnapshotTicks; // LastSnapshot for the metrics' thread (UTC ticks, 0: none)

    /// <summary>The last snapshot stored, or when this record began without one (read by the metrics' thread).</summary>
    public DateTime LastSuccessOrStartUtc => Interlocked.Read(ref _lastSnapshotTicks) is var t and > 0 ? new DateTime(t, DateTimeKind.Utc) : startedUtc;

    /// <summary>The repository's last snapshot time, known after a (re)start; a later own one wins.</summary>
    public void Restored(DateTimeOffset? last)
    {
        LastSnapshot ??= last;
        if (LastSnapshot is { } at) Interlocked.Exchange(ref _lastSnapshotTicks, at.UtcTicks);
    }

    public void Stored(StoreResult r, DateTime nowUtc)
    {
        Status = CollectorStatus.Running;
        if (r.Outcome != StoreOutcome.Stored) return;
        Snapshots++;
        LastSnapshot = new DateTimeOffset(nowUtc, TimeSpan.Zero);
        Interlocked.Exchange(ref _lastSnapshotTicks, LastSnapshot.Value.UtcTicks);
        LastError = r.Errors.Count > 0 ? r.Errors[^1] : null;
    }

    /// <summary>A snapshot lost (not read, or not stored), or a connection that failed: the status says where.</summary>
    public void Error(string status, string error, bool snapshotLost)
    {
        Status = status;
        LastError = error;
        if (snapshotLost) Failed++;
    }

    public ServerStatus ToStatus(int srvid, string? node, bool stopping, BacklogView? backlog) =>
        new(srvid, stopping ? CollectorStatus.Stopping : Status, node, LastSnapshot, LastError, Snapshots, Failed,
            backlog?.Count ?? 0, backlog?.Bytes ?? 0, backlog?.OldestUtc is { } t ? new DateTimeOffset(t) : null);

    /// <summary>FORCE_SNAPSHOT's answer when the server cannot take one now.</summary>
    public string Describe(int srvid) => $"server {srvid}: {Status}{(LastError is null ? "" : " (" + LastError + ")")}";
}
