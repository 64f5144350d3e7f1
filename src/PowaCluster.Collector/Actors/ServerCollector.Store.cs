using Akka.Actor;
using Akka.Event;
using PowaCluster.Collector.Postgres;
using PowaCluster.Collector.Staging;
using PowaCluster.Collector.Telemetry;

namespace PowaCluster.Collector.Actors;

/// <summary>
/// A ServerCollector's queue of snapshots read and waiting for the repository (ServerCollector.cs has the
/// states and the reads): stored one at a time, oldest first, each answer handled in every state (the common
/// handlers of ServerCollector.Control.cs route them here), so that a queue is stored through a reconnection.
/// </summary>
public sealed partial class ServerCollector
{
    /// <summary>Snapshots not stored since the last one stored (logged once, counted).</summary>
    int _notStoredInARow;

    /// <summary>A snapshot read, waiting for the repository.</summary>
    sealed record Staged(SnapshotStage Stage, long Sequence);

    /// <summary>Snapshots read and not stored yet: queued, and the one at a writer.</summary>
    int Unstored => _queue.Count + (_storing is null ? 0 : 1);

    /// <summary>
    /// The oldest snapshot read goes to the writers, unless one of this server's is being stored. A server
    /// handed off to another node leaves what it read to its node's writers, which store it in order without
    /// it (the pool never stores two snapshots of one server at once): its hand-off does not wait for the
    /// repository.
    /// </summary>
    void StoreNext()
    {
        if (_handedOff)
        {
            while (_queue.TryDequeue(out var left)) _writers.Tell(new StoreSnapshot(left.Stage, left.Sequence, ActorRefs.Nobody));
            if (_storing is not null) Timers.Cancel("store-watchdog");
            _storing = null; // stored or not, by the writers
            return;
        }
        if (_storing is not null || !_queue.TryDequeue(out var next)) return;
        _storing = next;
        _writers.Tell(new StoreSnapshot(next.Stage, next.Sequence, Self));
        Timers.StartSingleTimer("store-watchdog", new StoreWatchdog(next.Sequence), _settings.RepositoryTimeout * 2 + TimeSpan.FromMinutes(1));
    }

    void OnStored(SnapshotStored m)
    {
        Timers.Cancel("store-watchdog");
        _storing = null;
        if (_notStoredInARow > 0)
            _log.Info("Server {0}: the repository stores snapshots again; {1} could not be stored before", m.SrvId, _notStoredInARow);
        _notStoredInARow = 0;
        _record.Stored(m.Result);
        CollectorMetrics.Snapshots.Add(1, CollectorMetrics.ServerTags(m.SrvId, _config.Alias,
            m.Result.Outcome == StoreOutcome.Skipped ? "skipped" : "stored"));
        if (m.Result.Outcome == StoreOutcome.Skipped)
            _log.Warning("Server {0}: snapshot skipped: {1}", m.SrvId, m.Result.SkipReason);
        else
        {
            // The repository's plan for the next snapshot, without the catalogs while a later one carries them.
            if (_catalogSequence != 0 && _catalogSequence <= m.Sequence) _catalogSequence = 0;
            _plan = _catalogSequence != 0 ? m.Result.Plan.WithoutCatalogs() : m.Result.Plan;
        }
        foreach (var e in m.Result.Errors) _log.Warning("Server {0}: {1}", m.SrvId, e);
        if (m.Result.TakeSnapshotErrors != 0)
            _log.Warning("powa_take_snapshot({0}) reported {1} error(s); see the repository server's log", m.SrvId, m.Result.TakeSnapshotErrors);
        StoreNext();
        Settle();
    }

    void OnNotStored(SnapshotNotStored m)
    {
        Timers.Cancel("store-watchdog");
        _storing = null;
        if (_catalogSequence == m.Sequence) _catalogSequence = 0; // the next stored plan says they are due
        _record.Error(CollectorStatus.NoRepository, m.Error, snapshotLost: true);
        CollectorMetrics.Snapshots.Add(1, CollectorMetrics.ServerTags(m.SrvId, _config.Alias, "not_stored"));
        // Once per outage, not once per snapshot (a 10-minute outage was 120 lines per server); OnStored says
        // how many were lost when the repository takes them again.
        if (_notStoredInARow++ == 0) _log.Warning("Server {0}: snapshot not stored: {1}", m.SrvId, m.Error);
        else _log.Debug("Server {0}: snapshot not stored: {1}", m.SrvId, m.Error);
        if (_stopping && _queue.Count > 0)
        {
            // Stopping, and the repository fails: the others are not waited for.
            _log.Warning("Server {0}: {1} snapshots read and not stored are dropped: the server is stopping and the repository failed",
                m.SrvId, _queue.Count);
            while (_queue.TryDequeue(out var dropped))
            {
                dropped.Stage.Dispose();
                _record.Error(CollectorStatus.NoRepository, m.Error, snapshotLost: true);
            }
        }
        StoreNext();
        Settle();
    }

    /// <summary>The snapshots read and not given to a writer yet give their memory back.</summary>
    void DropQueue()
    {
        while (_queue.TryDequeue(out var s)) s.Stage.Dispose();
    }
}
