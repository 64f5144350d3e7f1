using Akka.Actor;

namespace PowaCluster.Collector.Scheduling;

/// <summary>
/// A server's snapshot tick: one timer of its own, precise to the millisecond, rather than a timer of Akka's
/// scheduler, whose wheel would have to turn many times a second to be as precise. Start to start: each
/// snapshot is due one interval after the previous one was due.
/// </summary>
public sealed class SnapshotClock : IDisposable
{
    Timer? _timer;

    /// <summary>When the pending (or last) tick is due, UTC.</summary>
    public DateTime DueUtc { get; private set; }

    /// <summary>Tells <paramref name="target"/> <paramref name="tick"/> at <paramref name="dueUtc"/> (at once if past).</summary>
    public void At(DateTime dueUtc, IActorRef target, object tick)
    {
        DueUtc = dueUtc;
        var delay = dueUtc - DateTime.UtcNow;
        _timer?.Dispose();
        _timer = new Timer(_ => target.Tell(tick), null, delay < TimeSpan.Zero ? TimeSpan.Zero : delay, Timeout.InfiniteTimeSpan);
    }

    /// <summary>The next tick, one interval after the last one was due (ServerSchedule.NextDue).</summary>
    public void Next(TimeSpan frequency, IActorRef target, object tick) =>
        At(ServerSchedule.NextDue(DueUtc, frequency, DateTime.UtcNow), target, tick);

    public void Dispose()
    {
        _timer?.Dispose();
        _timer = null;
    }
}
