using Akka.Actor;
using Akka.Event;
using Npgsql;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Postgres;
using PowaCluster.Collector.Scheduling;
using PowaCluster.Collector.Spooling;
using PowaCluster.Collector.Telemetry;

using PowaCluster.Collector.Hosting;

namespace PowaCluster.Collector.Actors;

/// <summary>
/// Node-local pool of SnapshotWriters. Its size bounds the node's repository connections and transactions.
/// Work waits in one queue and goes to the first idle writer, short work first (NextWork), so no server starves: a server's actor
/// gives its staged snapshots one at a time (it waits for the answer before it sends the next). Snapshots
/// of one server are never stored by two writers at once, and are stored in the order they came: a handed-off
/// server leaves its whole queue here (SnapshotDelivery.StoreNext). The wait and the writers' busy time are
/// measured (GetWriterPoolStats). DrainWriters answers once nothing is queued or being stored (a node that
/// stops stores what its servers left it).
/// </summary>
public sealed class SnapshotWriterPool : ReceiveActor
{
    readonly TimeProvider _time = NodeServices.Of(Context.System).Time; // the node's clock (NodeServices)
    readonly CollectorMetrics _metrics = NodeServices.Of(Context.System).Metrics;
    DateTime CurrentUtc => _time.GetUtcNow().UtcDateTime;
    readonly ILoggingAdapter _log = Context.GetLogger();
    readonly LinkedList<AssignWork> _pending = new();
    readonly Dictionary<IActorRef, int> _storingFor = [];  // writer -> the server whose snapshot it stores
    readonly List<IActorRef> _drainWaiting = [];
    readonly LinkedList<IActorRef> _idle = new();
    readonly HashSet<IActorRef> _busy = [];
    readonly int _size;
    long _dispatched, _stored;
    TimeSpan _totalWait, _maxWait, _totalBusy;
    DateTime _lastWaitWarningUtc = DateTime.MinValue;
    RepositoryHealth? _health;              // the writers' latest word on the repository
    readonly List<IActorRef> _healthWaiting = [];
    readonly TimeSpan _healthFreshFor;      // how long the writers' latest word answers /ready without a check
    readonly StagingUpkeep _upkeep;
    IActorRef? _vacuuming;                  // the writer that vacuums the staging tables

    public SnapshotWriterPool(CollectorSettings settings, NpgsqlConnectionStringBuilder repository, PowaSql sql, string? identity)
    {
        _size = settings.WriterPoolSize;
        _upkeep = new StagingUpkeep(settings.StagingVacuumInterval);
        _healthFreshFor = TimeSpan.FromTicks(Math.Min(TimeSpan.FromSeconds(15).Ticks, settings.ResyncInterval.Ticks / 2));
        for (var i = 1; i <= _size; i++)
            Context.ActorOf(SnapshotWriter.Props(settings, repository, sql, i, identity), $"writer-{i}");

        Receive<IWriterWork>(Enqueue);
        Receive<WriterIdle>(m =>
        {
            if (_busy.Remove(m.Writer)) _totalBusy += m.Busy;
            _metrics.WriterPool(_pending.Count, _busy.Count);
            _storingFor.Remove(m.Writer);
            if (m.Stored) _stored++;
            if (m.Writer.Equals(_vacuuming))
            {
                _vacuuming = null;
                if (_upkeep.Finished(CurrentUtc)) Vacuum();
            }
            if (m.Stored && _upkeep.Stored(CurrentUtc)) Vacuum();
            if (!_idle.Contains(m.Writer)) _idle.AddLast(m.Writer);
            Dispatch();
            AnswerDrained();
        });
        Receive<DrainWriters>(_ =>
        {
            _drainWaiting.Add(Sender);
            AnswerDrained();
        });
        Receive<SpoolUnstored>(_ =>
        {
            var live = TakePending();
            SpoolAsync(live, _busy.Count).PipeTo(Sender);
            AnswerDrained();
        });
        Receive<GetWorkPendingFor>(m => Sender.Tell(new WorkPendingFor(m.SrvIds, m.SrvIds
            .Where(id => _storingFor.ContainsValue(id) || _pending.Any(w => w.Work is StoreSnapshot s && s.SrvId == id)).ToHashSet())));
        Receive<RepositoryOutcome>(OnOutcome);
        Receive<GetRepositoryHealth>(_ => OnHealthRequest());
        Receive<GetWriterPoolStats>(_ => Sender.Tell(
            new WriterPoolStats(_size, _busy.Count, _pending.Count, _dispatched, _totalWait, _maxWait, _totalBusy, _stored)));
    }

    void OnOutcome(RepositoryOutcome m)
    {
        _health = new RepositoryHealth(m.Ok, m.Error, CurrentUtc);
        if (_healthWaiting.Count == 0) return;
        foreach (var w in _healthWaiting) w.Tell(_health);
        _healthWaiting.Clear();
    }

    /// <summary>
    /// Answers from the writers' latest word when it is recent; otherwise a check (SELECT 1) goes through the
    /// queue like any repository work, on a writer's connection: no connection of its own.
    /// </summary>
    void OnHealthRequest()
    {
        if (_health is { } h && CurrentUtc - h.CheckedAtUtc < _healthFreshFor)
        {
            Sender.Tell(h);
            return;
        }
        _healthWaiting.Add(Sender);
        if (_healthWaiting.Count == 1) Enqueue(CheckRepository.Instance);
    }

    void Vacuum()
    {
        _upkeep.Started(CurrentUtc);
        Add(_pending, VacuumStaging.Instance, CurrentUtc);
    }

    void Enqueue(IWriterWork work)
    {
        Add(_pending, work, CurrentUtc);
        Dispatch();
    }

    /// <summary>
    /// Queues work; a server's errors replace its errors still waiting (in their place in the queue): while the
    /// repository hangs, a server whose reconnections fail queues one report, not one per failure, and the one
    /// stored is its latest.
    /// </summary>
    internal static void Add(LinkedList<AssignWork> pending, IWriterWork work, DateTime nowUtc)
    {
        if (work is ReportErrors r)
            for (var n = pending.First; n is not null; n = n.Next)
                if (n.Value.Work is ReportErrors waiting && waiting.SrvId == r.SrvId)
                {
                    n.Value = n.Value with { Work = r };
                    return;
                }
        pending.AddLast(new AssignWork(work, nowUtc));
    }

    void AnswerDrained()
    {
        if (_drainWaiting.Count == 0 || _pending.Count > 0 || _busy.Count > 0) return;
        foreach (var w in _drainWaiting) w.Tell(WritersDrained.Instance);
        _drainWaiting.Clear();
    }

    /// <summary>
    /// The work to start now: the oldest short one (a row, a schedule, the coordinator's resync, errors,
    /// versions: one quick statement or three each), else the oldest live snapshot of a server none of whose
    /// snapshots a writer is storing, else the oldest spooled one (a replay): a backlog drains on the writers
    /// live snapshots leave free, so that the live snapshots of servers without a backlog keep their schedule
    /// (one waits at most for a store in progress) and the repository sees no more transactions of ours than
    /// the pool's size. Short work does not wait behind a backlog of snapshots: a server taken over, or a
    /// coordinator that moved, would otherwise wait minutes to learn what to collect.
    /// </summary>
    LinkedListNode<AssignWork>? NextWork()
    {
        LinkedListNode<AssignWork>? store = null, replay = null;
        for (var n = _pending.First; n is not null; n = n.Next)
        {
            if (n.Value.Work is not StoreSnapshot s) return n;
            if (_storingFor.ContainsValue(s.SrvId)) continue;
            if (!s.IsReplay) store ??= n;
            else replay ??= n;
        }
        return store ?? replay;
    }

    void Dispatch()
    {
        while (_idle.First is { } first && NextWork() is { } next)
        {
            var writer = first.Value;
            _idle.RemoveFirst();
            _pending.Remove(next);
            var work = next.Value;
            if (work.Work is StoreSnapshot store) _storingFor[writer] = store.SrvId;
            if (work.Work is VacuumStaging) _vacuuming = writer;
            var waited = CurrentUtc - work.EnqueuedAtUtc;
            _dispatched++;
            _totalWait += waited;
            if (waited > _maxWait) _maxWait = waited;
            // Once a minute at most: under a sustained overload this would be a line per snapshot.
            if (waited > TimeSpan.FromSeconds(5) && CurrentUtc - _lastWaitWarningUtc > TimeSpan.FromMinutes(1))
            {
                _lastWaitWarningUtc = CurrentUtc;
                _log.Warning("Repository work waited {0:F1} s for a writer ({1} queued): the repository, or the pool ({2}), " +
                             "does not keep up with the load", waited.TotalSeconds, _pending.Count, _size);
            }
            _busy.Add(writer);
            writer.Tell(work);
            _metrics.WriterQueueWait.Record(waited.TotalSeconds);
        }
        _metrics.WriterPool(_pending.Count, _busy.Count);
    }

    /// <summary>
    /// The stopping node's queue, out of it: the live snapshots in queue order (so a server's stay in order), to
    /// be spooled as when the repository is down; spooled ones stay where they are; other work is dropped.
    /// </summary>
    List<StoreSnapshot> TakePending()
    {
        var live = new List<StoreSnapshot>();
        foreach (var w in _pending)
            if (w.Work is StoreSnapshot { Replay: { } e } replay) replay.Spool!.Release(e);
            else if (w.Work is StoreSnapshot { Stage: not null } s) live.Add(s);
        _pending.Clear();
        _metrics.WriterPool(0, _busy.Count);
        return live;
    }

    /// <summary>Off the actor: writes the stages to their servers' spools, and disposes them.</summary>
    static async Task<UnstoredSpooled> SpoolAsync(List<StoreSnapshot> live, int storing)
    {
        int spooled = 0, lost = 0;
        string? error = null;
        foreach (var s in live)
            try
            {
                if (s.Spool is not { } spool) lost++;
                else
                {
                    await spool.WriteAsync(s.Stage!, s.Sequence, CancellationToken.None).ConfigureAwait(false);
                    spooled++;
                }
            }
            catch (SpoolException x)
            {
                lost++;
                error ??= x.Message;
            }
            finally { s.Stage!.Dispose(); }
        return new UnstoredSpooled(spooled, lost, storing, error);
    }

    /// <summary>Staged snapshots still queued when the node stops give their memory back.</summary>
    protected override void PostStop()
    {
        foreach (var w in _pending)
            if (w.Work is StoreSnapshot s)
            {
                s.Stage?.Dispose();
                if (s.Replay is { } e) s.Spool!.Release(e);
            }
        _pending.Clear();
    }

    /// <summary>A writer that crashes is restarted (its connection closed, which rolls back its transaction).</summary>
    protected override SupervisorStrategy SupervisorStrategy() =>
        new OneForOneStrategy(-1, TimeSpan.FromMinutes(1), _ => Directive.Restart);

    /// <param name="identity">what the repository is (RepositoryQueries.IdentityAsync), checked at each writer's connect; null: not checked</param>
    public static Props Props(CollectorSettings settings, NpgsqlConnectionStringBuilder repository, PowaSql sql, string? identity = null) =>
        Akka.Actor.Props.Create(() => new SnapshotWriterPool(settings, repository, sql, identity));
}
