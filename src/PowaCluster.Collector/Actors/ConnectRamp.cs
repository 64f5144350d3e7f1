using Akka.Actor;
using PowaCluster.Collector.Configuration;

using PowaCluster.Collector.Hosting;

namespace PowaCluster.Collector.Actors;

/// <summary>A ServerCollector asks before it opens its remote connection (its generation: a newer ask replaces an older one).</summary>
public sealed record RequestConnect(int SrvId, int Generation, TimeSpan Frequency);

/// <summary>The ramp's answer: connect now.</summary>
public sealed record ConnectGranted(int Generation);

/// <summary>The connection attempt is over (connected or failed): its slot is free.</summary>
public sealed record ConnectFinished(int Generation);

/// <summary>
/// Node-local: the pace at which the node's servers open their remote connections. A batch of servers that
/// arrives together (a cold start, a failover, a rebalance, a remote that restarted) connects at a bounded
/// rate, with jitter, and with a bounded number of attempts in progress, instead of all at once: a node that
/// opens a thousand connections in the same second times most of them out, and its own repository
/// connections with them. The rate is ConnectRate, or by default what connects the waiting servers within a
/// quarter of the shortest interval among them (5 to 100 a second). A hung attempt holds its slot for
/// ConnectTimeout / 2 at most: a frozen remote slows the ramp, it does not stop it.
/// </summary>
public sealed class ConnectRamp : ReceiveActor, IWithTimers
{
    readonly TimeProvider _time = NodeServices.Of(Context.System).Time; // the node's clock (NodeServices)
    DateTime CurrentUtc => _time.GetUtcNow().UtcDateTime;
    public const double MinAutoRate = 5, MaxAutoRate = 100;
    static readonly TimeSpan CatchUp = TimeSpan.FromMilliseconds(250);

    sealed record Waiting(IActorRef Entity, int Generation, TimeSpan Frequency);
    sealed class Pump { public static readonly Pump Instance = new(); }

    readonly CollectorSettings _settings;
    readonly TimeSpan _slotHold;
    readonly LinkedList<Waiting> _queue = new();
    readonly Dictionary<IActorRef, LinkedListNode<Waiting>> _queued = [];
    readonly Dictionary<IActorRef, (int Generation, DateTime UntilUtc)> _inFlight = [];
    readonly Random _random = new();
    DateTime _nextGrantUtc = DateTime.MinValue, _batchDeadlineUtc = DateTime.MinValue;
    long _granted;

    public ITimerScheduler Timers { get; set; } = null!;

    public ConnectRamp(CollectorSettings settings)
    {
        _settings = settings;
        _slotHold = settings.ConnectTimeout / 2;
        Receive<RequestConnect>(OnRequest);
        Receive<ConnectFinished>(m =>
        {
            if (_inFlight.TryGetValue(Sender, out var f) && f.Generation == m.Generation) _inFlight.Remove(Sender);
            Grant();
        });
        Receive<Terminated>(t =>
        {
            Forget(t.ActorRef);
            _inFlight.Remove(t.ActorRef);
            Grant();
        });
        Receive<Pump>(_ => Grant());
        Receive<GetConnectRampStats>(_ => Sender.Tell(new ConnectRampStats(_queue.Count, _inFlight.Count, _granted, Rate(CurrentUtc))));
    }

    void OnRequest(RequestConnect m)
    {
        var now = CurrentUtc;
        Forget(Sender);
        _inFlight.Remove(Sender); // a new attempt of the same server: its older one is over
        Context.Watch(Sender);
        // The batch this request belongs to should be connected within a quarter of its interval.
        var deadline = now + m.Frequency / 4;
        if (_queue.Count == 0 || _batchDeadlineUtc < now || deadline < _batchDeadlineUtc) _batchDeadlineUtc = deadline;
        _queued[Sender] = _queue.AddLast(new Waiting(Sender, m.Generation, m.Frequency));
        Grant();
    }

    void Forget(IActorRef entity)
    {
        if (_queued.Remove(entity, out var node)) _queue.Remove(node);
    }

    /// <summary>Grants what the rate and the free slots allow now, and comes back when the next one is due.</summary>
    void Grant()
    {
        var now = CurrentUtc;
        foreach (var entity in _inFlight.Where(kv => kv.Value.UntilUtc <= now).Select(kv => kv.Key).ToList()) _inFlight.Remove(entity);
        while (_queue.First is { } first && _inFlight.Count < _settings.MaxConcurrentConnects && _nextGrantUtc <= now)
        {
            var rate = Rate(now);
            _queue.RemoveFirst();
            var w = first.Value;
            _queued.Remove(w.Entity);
            _inFlight[w.Entity] = (w.Generation, now + _slotHold);
            _granted++;
            w.Entity.Tell(new ConnectGranted(w.Generation));
            var step = TimeSpan.FromSeconds((0.5 + _random.NextDouble()) / rate);
            // From the previous due time, not from now: Akka's timers tick every 100 ms, and grants due meanwhile
            // are caught up; at most a quarter of a second of them after an idle spell.
            _nextGrantUtc = (_nextGrantUtc > now - CatchUp ? _nextGrantUtc : now - CatchUp) + step;
        }
        if (_queue.Count == 0) return;
        var wake = _nextGrantUtc;
        if (_inFlight.Count >= _settings.MaxConcurrentConnects)
        {
            var freed = _inFlight.Values.Min(v => v.UntilUtc);
            if (freed > wake) wake = freed;
        }
        var delay = wake - now;
        Timers.StartSingleTimer("pump", Pump.Instance, delay > TimeSpan.FromMilliseconds(10) ? delay : TimeSpan.FromMilliseconds(10));
    }

    /// <summary>Connections a second: the setting, or what connects the waiting servers before the batch's deadline.</summary>
    double Rate(DateTime now)
    {
        if (_settings.ConnectRate > 0) return _settings.ConnectRate;
        var left = (_batchDeadlineUtc - now).TotalSeconds;
        var rate = left <= 0 ? MaxAutoRate : _queue.Count / left;
        return Math.Clamp(rate, MinAutoRate, MaxAutoRate);
    }

    public static Props Props(CollectorSettings settings) => Akka.Actor.Props.Create(() => new ConnectRamp(settings));
}

/// <summary>Asks the ramp how it stands.</summary>
public sealed record GetConnectRampStats
{
    public static readonly GetConnectRampStats Instance = new();
}

/// <summary>Servers waiting to connect, attempts in progress, connections granted since start, the current rate a second.</summary>
public sealed record ConnectRampStats(int Waiting, int InFlight, long Granted, double Rate);
