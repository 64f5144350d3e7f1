using Akka.Actor;

namespace PowaCluster.Collector.Scheduling;

/// <summary>
/// A server's snapshot tick: one timer of its own, precise to the millisecond, rather than a timer of Akka's
/// scheduler, whose wheel would have to turn many times a second to be as precise. When it is due is the
/// server's state's to say (ServerSchedule).
/// </summary>
public sealed class SnapshotClock(TimeProvider time) : IDisposable
{
    ITimer? _timer;

    /// <summary>Tells <paramref name="target"/> <paramref name="tick"/> at <paramref name="dueUtc"/> (at once if past).</summary>
    public void At(DateTime dueUtc, IActorRef target, object tick)
    {
        var delay = dueUtc - time.GetUtcNow().UtcDateTime;
        _timer?.Dispose();
        _timer = time.CreateTimer(_ => target.Tell(tick), null, delay < TimeSpan.Zero ? TimeSpan.Zero : delay, Timeout.InfiniteTimeSpan);
    }

    public void Dispose()
    {
        _timer?.Dispose();
        _timer = null;
    }
}
