using Akka.Actor;
using Akka.Event;
using PowaCluster.Collector.Postgres;
using PowaCluster.Collector.Spooling;
using PowaCluster.Collector.Staging;
using PowaCluster.Collector.Telemetry;

namespace PowaCluster.Collector.Actors;

/// <summary>
/// A ServerCollector's snapshots read and waiting for the repository (ServerCollector.cs has the states and
/// the reads): stored one at a time, oldest first, each answer handled in every state (the common handlers
/// of ServerCollector.Control.cs route them here), so that a queue is stored through a reconnection. While
/// the repository cannot store them, snapshots go to the server's spool on the node's disk (ServerSpool),
/// and are replayed from it, oldest first, before the server's next live snapshot is stored.
/// </summary>
public sealed partial class ServerCollector
{
    /// <summary>Snapshots not stored since the last one stored (logged once, counted).</summary>
    int _notStoredInARow;

    /// <summary>The repository failed the last store: reads go to the spool, and one replay a tick probes it.</summary>
    bool _repositoryDown;

    /// <summary>The queue is being written to the spool (the repository just went down): nothing is stored meanwhile.</summary>
    bool _spoolingQueue;

    long _spooledInOutage, _replayed;
    bool _spoolErrorSaid;           // a spool write failed in this outage, and the log said so

    /// <summary>A snapshot read, waiting for the repository; or (Stage null) a spooled one being replayed.</summary>
    sealed record Staged(SnapshotStage? Stage, long Sequence, SpoolEntry? Replay = null);

    /// <summary>Written to the spool from the queue; Left: those that could not be (Error says why), back to the queue.</summary>
    sealed record QueueSpooled(int Written, IReadOnlyList<Staged> Left, string? Error);

    /// <summary>Snapshots read and not stored yet: queued, and the one at a writer.</summary>
    int Unstored => _queue.Count + (_storing is null ? 0 : 1);

    /// <summary>The server's next reads go to its spool: the repository is down, or older snapshots wait there.</summary>
    bool Spooling => _spool is not null && (_repositoryDown || _spool.Count > 0);

    /// <summary>
    /// The oldest snapshot goes to the writers, unless one of this server's is being stored: the queue's head
    /// or the spool's oldest, whichever was taken first. While the repository is down a spooled one goes only
    /// as the tick's probe. A server handed off to another node leaves what it read to its node's writers,
    /// which store (or spool) it in order without it: its hand-off does not wait for the repository, and
    /// what it spooled is replayed by the node's SpoolKeeper.
    /// </summary>
    void StoreNext(bool probe = false)
    {
        if (_handedOff)
        {
            while (_queue.TryDequeue(out var left)) _writers.Tell(new StoreSnapshot(left.Stage, left.Sequence, ActorRefs.Nobody, _spool));
            if (_storing is not null) Timers.Cancel("store-watchdog");
            _storing = null; // stored or not, by the writers
            return;
        }
        if (_storing is not null || _spoolingQueue) return;
        _queue.TryPeek(out var head);
        if (_spool is { } spool && spool.OldestUtc is { } oldest && (head is null || oldest <= head.Stage!.TakenAtUtc))
        {
            if (_repositoryDown && !probe) return;
            if (spool.TakeOldest() is not { } entry) return; // the node's keeper is storing it: the next tick
            _storing = new Staged(null, ++_sequence, entry);
            _writers.Tell(new StoreSnapshot(null, _storing.Sequence, Self, spool, entry));
        }
        else if (_queue.TryDequeue(out var next))
        {
            _storing = next;
            _writers.Tell(new StoreSnapshot(next.Stage, next.Sequence, Self, _spool));
        }
        else return;
        Timers.StartSingleTimer("store-watchdog", new StoreWatchdog(_storing.Sequence), _settings.RepositoryTimeout * 2 + TimeSpan.FromMinutes(1));
    }

    void OnStored(SnapshotStored m)
    {
        Saw(m.Result.Sequence);
        Timers.Cancel("store-watchdog");
        _storing = null;
        _repositoryDown = false;
        if (_notStoredInARow > 0)
            _log.Info("Server {0}: the repository stores snapshots again; {1} could not be stored before{2}", m.SrvId, _notStoredInARow,
                _spooledInOutage > 0 ? $", {_spooledInOutage} spooled on this node are replayed now" : "");
        _notStoredInARow = 0;
        _spoolErrorSaid = false;
        _record.Stored(m.Result);
        FollowRepositoryPowa(m.Result.RepositoryPowa);
        CountSnapshots(m.Result.Outcome switch
        {
            StoreOutcome.Skipped => "skipped", StoreOutcome.Refused => "refused", StoreOutcome.Rejected => "rejected", _ => "stored",
        });
        if (m.Result.Outcome == StoreOutcome.Skipped)
            _log.Warning("Server {0}: {1}snapshot skipped: {2}", m.SrvId, m.Replayed is null ? "" : "spooled ", m.Result.SkipReason);
        else if (m.Result.Outcome == StoreOutcome.Rejected && m.Replayed is not null)
            _record.Error(CollectorStatus.Running, m.Result.SkipReason!, snapshotLost: true); // the spool said which file, and why
        else if (m.Result.Outcome is StoreOutcome.Refused or StoreOutcome.Rejected) OnRefused(m);
        else
        {
            // The repository's plan for the next snapshot, without the catalogs while a later one carries them.
            if (_catalogSequence != 0 && _catalogSequence <= (m.Replayed?.Sequence ?? m.Sequence)) _catalogSequence = 0;
            _plan = _catalogSequence != 0 ? m.Result.Plan.WithoutCatalogs() : m.Result.Plan;
        }
        if (m.Replayed is not null)
        {
            _replayed++;
            if (_spool!.Count == 0)
            {
                _log.Info("Server {0}: its spooled snapshots are replayed ({1} stored from the spool)", m.SrvId, _replayed);
                (_replayed, _spooledInOutage) = (0, 0);
            }
        }
        foreach (var e in m.Result.Errors) _log.Warning("Server {0}: {1}", m.SrvId, e);
        if (m.Result.TakeSnapshotErrors != 0)
            _log.Warning("powa_take_snapshot({0}) reported {1} error(s); see the repository server's log", m.SrvId, m.Result.TakeSnapshotErrors);
        StoreNext();
        Settle();
    }

    /// <summary>
    /// The repository's powa, as the last store read it: an ALTER EXTENSION powa UPDATE there is followed with no
    /// restart (the next connection's check compares the remote with it).
    /// </summary>
    void FollowRepositoryPowa(string? text)
    {
        if (PowaVersion.Parse(text) is not { } now || now.Text == _repositoryPowa.Text) return;
        _log.Info("Server {0}: the repository's powa is {1} now (was {2})", _srvId, now, _repositoryPowa);
        _repositoryPowa = now;
    }

    /// <summary>
    /// The repository refused a snapshot: the remote's powa and its own differ (one side was updated), or the
    /// remote sent rows of another server (its functions changed the session's srvid). Nothing of it was stored;
    /// the error goes to powa_snapshot_metas.errors, and the connection is opened again (with the srvid set
    /// anew), whose check says the same until both sides match (then collection resumes by itself, versions
    /// saved again).
    /// </summary>
    void OnRefused(SnapshotStored m)
    {
        _record.Error(CollectorStatus.NoRemote, m.Result.SkipReason!, snapshotLost: true);
        if (_remote is not null && !_stopping)
            Disconnected(CollectorStatus.NoRemote, m.Result.SkipReason!, report: true);
        else _log.Debug("Server {0}: {1}snapshot refused: {2}", m.SrvId, m.Replayed is null ? "" : "spooled ", m.Result.SkipReason);
    }

    void OnNotStored(SnapshotNotStored m)
    {
        Timers.Cancel("store-watchdog");
        var stored = _storing;
        _storing = null;
        if (m.Spooled)
        {
            // The repository failed, not the snapshot: it waits in the spool, and so do the next ones.
            var entering = !_repositoryDown;
            _repositoryDown = true;
            _record.Error(CollectorStatus.NoRepository, m.Error, snapshotLost: false);
            if (m.Replayed is null)
            {
                _spooledInOutage++;
                CountSnapshots("spooled");
            }
            if (_notStoredInARow++ == 0)
                _log.Warning("Server {0}: the repository cannot store snapshots ({1}); they are spooled in {2} and replayed when it can",
                    m.SrvId, m.Error, _nodeSpool!.Directory);
            if (entering) SpoolQueue();
            return;
        }
        if (m.Replayed is { } gone)
        {
            // The repository refuses this spooled snapshot for good: it is deleted, and the next one goes.
            _record.Error(CollectorStatus.NoRepository, m.Error, snapshotLost: true);
            CountSnapshots("not_stored");
            _log.Warning("Server {0}: the spooled snapshot taken at {1:yyyy-MM-dd HH:mm:ss} UTC is refused by the repository and dropped: {2}",
                m.SrvId, gone.TakenAtUtc, m.Error);
            StoreNext();
            Settle();
            return;
        }
        if (m.SpoolError is not null) SpoolFailed(m.SpoolError);
        if (_catalogSequence == m.Sequence) _catalogSequence = 0; // the next stored plan says they are due
        _record.Error(CollectorStatus.NoRepository, m.Error, snapshotLost: true);
        CountSnapshots("not_stored");
        // Once per outage, not once per snapshot (a 10-minute outage was 120 lines per server); OnStored says
        // how many were lost when the repository takes them again.
        if (_notStoredInARow++ == 0) _log.Warning("Server {0}: snapshot not stored: {1}", m.SrvId, m.Error);
        else _log.Debug("Server {0}: snapshot not stored: {1}", m.SrvId, m.Error);
        if (_stopping && _queue.Count > 0 && stored?.Stage is not null)
        {
            // Stopping, and the repository fails: the others are not waited for.
            _log.Warning("Server {0}: {1} snapshots read and not stored are dropped: the server is stopping and the repository failed",
                m.SrvId, _queue.Count);
            while (_queue.TryDequeue(out var dropped))
            {
                dropped.Stage?.Dispose();
                _record.Error(CollectorStatus.NoRepository, m.Error, snapshotLost: true);
            }
        }
        StoreNext();
        Settle();
    }

    /// <summary>
    /// The repository just went down: the snapshots read before and waiting in memory go to the spool as
    /// well (off the actor's thread), so that a crash of the node during the outage loses none of them.
    /// </summary>
    void SpoolQueue()
    {
        if (_spool is not { } spool || _queue.Count == 0) return;
        var staged = _queue.ToList();
        _queue.Clear();
        _spoolingQueue = true;
        Task.Run(async () =>
        {
            for (var i = 0; i < staged.Count; i++)
            {
                try { await spool.WriteAsync(staged[i].Stage!, staged[i].Sequence, CancellationToken.None).ConfigureAwait(false); }
                catch (SpoolException e) { return new QueueSpooled(i, staged.Skip(i).ToList(), e.Message); }
                staged[i].Stage!.Dispose();
            }
            return new QueueSpooled(staged.Count, [], null);
        }).PipeTo(Self);
    }

    void OnQueueSpooled(QueueSpooled m)
    {
        _spoolingQueue = false;
        _spooledInOutage += m.Written;
        if (m.Written > 0) CountSnapshots("spooled", m.Written);
        if (m.Left.Count > 0)
        {
            // Back in memory, first: older than anything read meanwhile.
            var rest = _queue.ToList();
            _queue.Clear();
            foreach (var s in m.Left.Concat(rest)) _queue.Enqueue(s);
        }
        if (m.Error is not null) SpoolFailed(m.Error);
        StoreNext();
        Settle();
    }

    /// <summary>A snapshot could not be written to the spool (a full or read-only disk): said once per outage.</summary>
    void SpoolFailed(string error)
    {
        if (_spoolErrorSaid) return;
        _spoolErrorSaid = true;
        _log.Error("Server {0}: the spool cannot be written: {1}; until it can, snapshots the repository cannot store are lost " +
                   "(the ones read meanwhile wait in memory, {2} at most)", _srvId, error, _settings.MaxQueuedSnapshots);
    }

    /// <summary>powa_snapshots_total of this server, by outcome.</summary>
    void CountSnapshots(string outcome, long n = 1) =>
        CollectorMetrics.Snapshots.Add(n, CollectorMetrics.ServerTags(_srvId, _config.Alias, outcome));

    /// <summary>The snapshots read and not given to a writer yet give their memory back.</summary>
    void DropQueue()
    {
        while (_queue.TryDequeue(out var s)) s.Stage?.Dispose();
    }
}
