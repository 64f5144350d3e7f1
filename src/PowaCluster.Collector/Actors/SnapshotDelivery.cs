using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Postgres;
using static PowaCluster.Collector.Actors.ServerDo;

namespace PowaCluster.Collector.Actors;

/// <summary>
/// One server's snapshots from read to stored, decided: the queue in memory, the one at a writer, the spool
/// while the repository is down, and the hand-over when the shard moves. A plain class that ServerState owns
/// (it decides the collection: row, connection, schedule, plan) and that writes its actions to the same list;
/// how the two fit together is in docs/architecture.md (its ServerCollector section).
/// </summary>
public sealed class SnapshotDelivery(CollectorSettings settings, IServerSurroundings world, ServerRecord record,
    Func<int> srvId, Action<ServerAction> @do)
{
    /// <summary>A snapshot read and waiting for the repository (its stage is the actor's).</summary>
    sealed record Queued(long Sequence, DateTime TakenAtUtc);

    /// <summary>The snapshot at a writer: one read here, or the spool's oldest.</summary>
    sealed record AtWriter(long Sequence, bool Replay, DateTime? TakenAtUtc = null);

    /// <summary>What a store's answer meant for the collection (ServerState's part of it).</summary>
    public enum NotStoredAs { NotOurs, Spooled, SpooledDropped, Lost }

    readonly Queue<Queued> _queue = new();       // oldest first
    List<Queued>? _toSpool;                      // being written to the spool (the repository just went down)
    AtWriter? _storing;
    long _sequence;
    bool _repositoryDown, _spoolErrorSaid;
    int _notStoredInARow;
    long _spooledInOutage, _replayed;

    int SrvId => srvId();

    /// <summary>Handed off: what is read from now on goes to the node's writers without this entity.</summary>
    public bool HandedOff { get; private set; }
    /// <summary>Snapshots read and not stored yet: queued, and the one at a writer.</summary>
    public int Unstored => _queue.Count + (_storing is null ? 0 : 1);
    /// <summary>A snapshot waits for the repository, is being spooled or stored.</summary>
    public bool Busy => Unstored > 0 || _toSpool is not null;
    /// <summary>Room in memory for one more read: the queue is empty, or short and the node has room.</summary>
    public bool CanQueue => Unstored == 0 || (Unstored < settings.MaxQueuedSnapshots && world.RoomToReadAhead);
    /// <summary>Reads go to the spool: the repository is down, or older snapshots (here or on another node) are spooled.</summary>
    public bool Spooling => world.Backlog is { } b && (_repositoryDown || b.Count > 0 || world.OldestElsewhere is not null);

    /// <summary>The oldest snapshot this entity holds (its spool's, or its queue's head), null when it holds none.</summary>
    public DateTime? OldestOwnUtc => Earliest(world.Backlog?.OldestUtc, _queue.TryPeek(out var head) ? head.TakenAtUtc : null);

    static DateTime? Earliest(DateTime? a, DateTime? b) => a is null ? b : b is null ? a : a < b ? a : b;

    /// <summary>Whether a node holding spooled snapshots of this server from <paramref name="oldestUtc"/> on stores them before this entity's.</summary>
    public bool YieldsTo(DateTime oldestUtc) => OldestOwnUtc is not { } mine || oldestUtc <= mine;

    /// <summary>Read and replayed snapshots share one sequence: a writer's answer names which it was.</summary>
    public long NextSequence() => ++_sequence;

    /// <summary>Started during an outage with a saved plan: reads go to the spool; from the second tick on, its oldest probes the repository.</summary>
    public void StartInOutage() => _repositoryDown = true;

    /// <summary>A tick: while the repository is down, the spool's oldest probes it.</summary>
    public void Tick()
    {
        if (!_repositoryDown) return;
        // With nothing spooled or waiting (the bounds dropped them, or the disk refused them), this tick's
        // snapshot goes to a writer as a live one.
        if (world.Backlog is not { } backlog || (backlog.Count == 0 && Unstored == 0)) _repositoryDown = false;
        else StoreNext(probe: true);
    }

    /// <summary>A snapshot read: spooled, queued, or dropped when neither memory nor the spool has room.</summary>
    /// <param name="spooled">written to the spool (the stage can go)</param>
    /// <param name="spoolError">to be spooled, and could not be</param>
    public void Read(long sequence, DateTime takenAtUtc, bool spooled, string? spoolError, string detail)
    {
        if (spoolError is not null) SpoolFailed(spoolError);
        if (spooled)
        {
            @do(new DropStages([sequence])); // on the disk: the memory goes back
            _spooledInOutage++;
            @do(new Count("spooled"));
            if (_repositoryDown) record.Status = CollectorStatus.NoRepository;
        }
        else if (spoolError is not null && Unstored >= settings.MaxQueuedSnapshots)
        {
            // Read for the spool because the queue is full, and the spool refused it: no room anywhere.
            @do(new DropStages([sequence]));
            record.Error(CollectorStatus.NoRepository, spoolError, snapshotLost: true);
            @do(new Count("not_stored"));
            return;
        }
        else
        {
            _queue.Enqueue(new Queued(sequence, takenAtUtc));
            @do(new Say(NoteLevel.Debug, $"Server {SrvId}: snapshot read{detail}; {Unstored} waiting for the repository"));
        }
        StoreNext();
    }

    /// <summary>Whether <paramref name="sequence"/> is the snapshot at a writer (an answer for another is stale).</summary>
    public bool AtWriterNow(long sequence) => _storing?.Sequence == sequence;

    /// <summary>
    /// The repository answered a store: the outage, if any, is over. False, and nothing done, when
    /// <paramref name="sequence"/> is not the snapshot at a writer (a stale answer).
    /// </summary>
    public bool Stored(long sequence, StoreResult result, bool replayed)
    {
        if (!AtWriterNow(sequence)) return false;
        @do(new CancelWatchdog());
        _storing = null;
        _repositoryDown = false;
        if (_notStoredInARow > 0)
            @do(new Say(NoteLevel.Info, $"Server {SrvId}: the repository stores snapshots again; {_notStoredInARow} could not be stored before" +
                                        (_spooledInOutage > 0 ? $", {_spooledInOutage} spooled on this node are replayed now" : "")));
        _notStoredInARow = 0;
        _spoolErrorSaid = false;
        @do(new Count(result.Outcome switch
        {
            StoreOutcome.Skipped => "skipped",
            StoreOutcome.Refused => "refused",
            StoreOutcome.Rejected => "rejected",
            _ => "stored",
        }));
        if (!replayed) return true;
        _replayed++;
        if (world.Backlog?.Count == 0)
        {
            @do(new Say(NoteLevel.Info, $"Server {SrvId}: its spooled snapshots are replayed ({_replayed} stored from the spool)"));
            (_replayed, _spooledInOutage) = (0, 0);
        }
        return true;
    }

    /// <summary>The store at a writer failed: spooled (the repository failed), a spooled one dropped, or lost.</summary>
    /// <param name="spooled">the repository failed, not the snapshot: it is in the spool</param>
    /// <param name="replayedTakenAtUtc">set when it was a spooled one</param>
    /// <param name="stopping">the server stops: the others read are not waited for</param>
    public NotStoredAs NotStored(long sequence, string error, bool spooled, DateTime? replayedTakenAtUtc, string? spoolError, bool stopping)
    {
        if (_storing?.Sequence != sequence) return NotStoredAs.NotOurs;
        @do(new CancelWatchdog());
        var stored = _storing;
        _storing = null;
        if (spooled)
        {
            // It waits in the spool, and so do the next ones.
            var entering = !_repositoryDown;
            _repositoryDown = true;
            record.Error(CollectorStatus.NoRepository, error, snapshotLost: false);
            if (replayedTakenAtUtc is null)
            {
                _spooledInOutage++;
                @do(new Count("spooled"));
            }
            if (_notStoredInARow++ == 0)
                @do(new Say(NoteLevel.Warning, $"Server {SrvId}: the repository cannot store snapshots ({error}); they are spooled in {world.Backlog?.Directory} and replayed when it can"));
            if (entering) SpoolQueue();
            return NotStoredAs.Spooled;
        }
        if (replayedTakenAtUtc is { } taken)
        {
            // The repository refuses this spooled snapshot for good: it is deleted, and the next one goes.
            record.Error(CollectorStatus.NoRepository, error, snapshotLost: true);
            @do(new Count("not_stored"));
            @do(new Say(NoteLevel.Warning, $"Server {SrvId}: the spooled snapshot taken at {taken:yyyy-MM-dd HH:mm:ss} UTC is refused by the repository and dropped: {error}"));
            StoreNext();
            return NotStoredAs.SpooledDropped;
        }
        if (spoolError is not null) SpoolFailed(spoolError);
        record.Error(CollectorStatus.NoRepository, error, snapshotLost: true);
        @do(new Count("not_stored"));
        // Once per outage, not once per snapshot; Stored says how many were lost when the repository takes them again.
        @do(new Say(_notStoredInARow++ == 0 ? NoteLevel.Warning : NoteLevel.Debug, $"Server {SrvId}: snapshot not stored: {error}"));
        if (stopping && _queue.Count > 0 && stored is { Replay: false })
        {
            // Stopping, and the repository fails: the others are not waited for.
            @do(new Say(NoteLevel.Warning, $"Server {SrvId}: {_queue.Count} snapshots read and not stored are dropped: the server is stopping and the repository failed"));
            @do(new DropStages(_queue.Select(q => q.Sequence).ToList()));
            foreach (var _ in _queue) record.Error(CollectorStatus.NoRepository, error, snapshotLost: true);
            _queue.Clear();
        }
        StoreNext();
        return NotStoredAs.Lost;
    }

    /// <summary>The spool's oldest could not be taken (the node's keeper is storing it): the next tick tries again.</summary>
    public void ReplayNotTaken(long sequence)
    {
        if (_storing is { Replay: true } s && s.Sequence == sequence) _storing = null;
    }

    /// <summary>The queue went to the spool: the first <paramref name="written"/> are there; the rest, back in memory.</summary>
    public void QueueSpooled(int written, string? error)
    {
        if (_toSpool is null) return;
        var left = _toSpool.Skip(written).ToList();
        _toSpool = null;
        _spooledInOutage += written;
        if (written > 0) @do(new Count("spooled", written));
        if (left.Count > 0)
        {
            // Back in memory, first: older than anything read meanwhile.
            var rest = _queue.ToList();
            _queue.Clear();
            foreach (var q in left.Concat(rest)) _queue.Enqueue(q);
        }
        if (error is not null) SpoolFailed(error);
        StoreNext();
    }

    /// <summary>The shard moves: what was read goes to the node's writers at once, and so does what is read later.</summary>
    public void HandOff()
    {
        HandedOff = true;
        StoreNext();
    }

    /// <summary>
    /// The oldest snapshot goes to the writers, unless one of this server's is being stored: the queue's head
    /// or the spool's oldest, whichever was taken first. While the repository is down a spooled one goes only
    /// as the tick's probe. Handed off, what was read goes to the node's writers, which store (or spool) it in
    /// order without this entity; what it spooled is replayed by the node's SpoolKeeper.
    /// </summary>
    public void StoreNext(bool probe = false)
    {
        if (HandedOff)
        {
            // The one at a writer was the queue's head: the oldest left.
            var atWriter = _storing is { Replay: false, TakenAtUtc: { } taken } ? taken : (DateTime?)null;
            if ((atWriter ?? (_queue.TryPeek(out var first) ? first.TakenAtUtc : null)) is { } leftFrom)
                @do(new HandOver(_queue.Select(q => q.Sequence).ToList(), leftFrom, _queue.Count + (atWriter is null ? 0 : 1)));
            _queue.Clear();
            if (_storing is not null) @do(new CancelWatchdog());
            _storing = null; // stored or not, by the writers
            return;
        }
        if (_storing is not null || _toSpool is not null) return;
        if (world.OldestElsewhere is { } elsewhere && world.Backlog is not null && YieldsTo(elsewhere)) return; // an older one first (BacklogHeld)
        _queue.TryPeek(out var head);
        if (world.Backlog?.OldestUtc is { } oldest && (head is null || oldest <= head.TakenAtUtc))
        {
            if (_repositoryDown && !probe) return;
            _storing = new AtWriter(NextSequence(), Replay: true);
            @do(new Replay(_storing.Sequence));
        }
        else if (_queue.TryDequeue(out var next))
        {
            _storing = new AtWriter(next.Sequence, Replay: false, next.TakenAtUtc);
            @do(new Store(next.Sequence));
        }
    }

    /// <summary>The repository just went down: the snapshots waiting in memory go to the spool too (a crash loses none).</summary>
    void SpoolQueue()
    {
        if (world.Backlog is null || _queue.Count == 0) return;
        _toSpool = _queue.ToList();
        _queue.Clear();
        @do(new ServerDo.SpoolQueue(_toSpool.Select(q => q.Sequence).ToList()));
    }

    /// <summary>A snapshot could not be written to the spool (a full or read-only disk): said once per outage.</summary>
    void SpoolFailed(string error)
    {
        if (_spoolErrorSaid) return;
        _spoolErrorSaid = true;
        @do(new Say(NoteLevel.Error, $"Server {SrvId}: the spool cannot be written: {error}; until it can, snapshots the repository cannot store are lost " +
                                     $"(the ones read meanwhile wait in memory, {settings.MaxQueuedSnapshots} at most)"));
    }
}
