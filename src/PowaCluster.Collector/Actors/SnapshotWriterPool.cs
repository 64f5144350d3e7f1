using Akka.Actor;
using Akka.Event;
using Npgsql;
using PowaCluster.Collector.Configuration;

namespace PowaCluster.Collector.Actors;

/// <summary>
/// Node-local pool of SnapshotWriters. Its size bounds the node's repository connections and concurrent
/// snapshot transactions. Work waits in one FIFO queue and goes to the first idle writer; the wait is measured.
/// </summary>
public sealed class SnapshotWriterPool : ReceiveActor
{
    readonly ILoggingAdapter _log = Context.GetLogger();
    readonly Queue<AssignWork> _pending = new();
    readonly LinkedList<IActorRef> _idle = new();
    readonly HashSet<IActorRef> _busy = [];
    readonly int _size;
    long _dispatched;
    TimeSpan _totalWait, _maxWait;
    RepositoryHealth? _health;              // the writers' latest word on the repository
    readonly List<IActorRef> _healthWaiting = [];
    readonly TimeSpan _healthFreshFor;     // how long the writers' latest word answers /ready without a check

    public SnapshotWriterPool(CollectorSettings settings, NpgsqlConnectionStringBuilder repository)
    {
        _size = settings.WriterPoolSize;
        _healthFreshFor = TimeSpan.FromTicks(Math.Min(TimeSpan.FromSeconds(15).Ticks, settings.ResyncInterval.Ticks / 2));
        for (var i = 1; i <= _size; i++)
            Context.ActorOf(SnapshotWriter.Props(settings, repository, i), $"writer-{i}");

        Receive<RequestSnapshotSession>(m => Enqueue(m));
        Receive<RunRepositoryJob>(m => Enqueue(m));
        Receive<WriterIdle>(m =>
        {
            _busy.Remove(m.Writer);
            if (!_idle.Contains(m.Writer)) _idle.AddLast(m.Writer);
            Dispatch();
        });
        Receive<RepositoryOutcome>(m => _health = new RepositoryHealth(m.Ok, m.Error, DateTime.UtcNow));
        Receive<GetRepositoryHealth>(_ => OnHealthRequest());
        Receive<RepositoryJobResult>(OnHealthChecked);
        Receive<GetWriterPoolStats>(_ => Sender.Tell(
            new WriterPoolStats(_size, _busy.Count, _pending.Count, _dispatched, _totalWait, _maxWait)));
    }

    /// <summary>
    /// Answers from the writers' latest word when it is recent; otherwise a check (SELECT 1) goes through the
    /// queue like any repository work, on a writer's connection: no connection of its own.
    /// </summary>
    void OnHealthRequest()
    {
        if (_health is { } h && DateTime.UtcNow - h.CheckedAtUtc < _healthFreshFor)
        {
            Sender.Tell(h);
            return;
        }
        _healthWaiting.Add(Sender);
        if (_healthWaiting.Count > 1) return; // a check is already on its way
        Enqueue(new RunRepositoryJob(0, "health-check", async (c, ct) =>
        {
            await using var cmd = new NpgsqlCommand("SELECT 1", c);
            await cmd.ExecuteScalarAsync(ct);
            return null;
        }, Self));
    }

    void OnHealthChecked(RepositoryJobResult r)
    {
        if (r.What != "health-check") return;
        _health = new RepositoryHealth(r.Error is null, r.Error, DateTime.UtcNow);
        foreach (var w in _healthWaiting) w.Tell(_health);
        _healthWaiting.Clear();
    }

    void Enqueue(object work)
    {
        _pending.Enqueue(new AssignWork(work, DateTime.UtcNow));
        Dispatch();
    }

    void Dispatch()
    {
        while (_pending.Count > 0 && _idle.First is { } first)
        {
            var writer = first.Value;
            _idle.RemoveFirst();
            var work = _pending.Dequeue();
            var waited = DateTime.UtcNow - work.EnqueuedAtUtc;
            _dispatched++;
            _totalWait += waited;
            if (waited > _maxWait) _maxWait = waited;
            if (waited > TimeSpan.FromSeconds(5))
                _log.Warning("Repository work waited {0:F1} s for a writer: the pool ({1}) is too small for the load", waited.TotalSeconds, _size);
            _busy.Add(writer);
            writer.Tell(work);
        }
    }

    /// <summary>A writer that crashes is restarted (its connection closed, which rolls back its transaction).</summary>
    protected override SupervisorStrategy SupervisorStrategy() =>
        new OneForOneStrategy(-1, TimeSpan.FromMinutes(1), _ => Directive.Restart);

    public static Props Props(CollectorSettings settings, NpgsqlConnectionStringBuilder repository) =>
        Akka.Actor.Props.Create(() => new SnapshotWriterPool(settings, repository));
}
