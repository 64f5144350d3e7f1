namespace PowaCluster.Collector.Scheduling;

/// <summary>When a server's snapshots are due, and how long it waits before reconnecting. Pure functions.</summary>
public static class ServerSchedule
{
    /// <summary>
    /// When the first snapshot of a (re)started entity is due, from the last one stored in the repository:
    /// - never snapshotted: at a random phase within the interval, so that servers registered together do not
    ///   fire together;
    /// - last one less than an interval ago (a hand-off): one interval after it, as if nothing had happened;
    /// - overdue (taken over from a node that died, a restart after an outage): soon, at a random point within
    ///   a fifth of an interval, so that servers that move together do not all fire at the same instant; and
    ///   while the gap can still stay under one and a half intervals (what counts as an interval lost), before
    ///   1.4 intervals have passed since the last one (the writer queue takes some time too).
    /// </summary>
    public static DateTime FirstDue(DateTime? lastUtc, TimeSpan frequency, DateTime nowUtc, double random)
    {
        if (lastUtc is not { } last) return nowUtc + frequency * random;
        var since = nowUtc - last;
        if (since <= frequency) return last + frequency;
        var window = frequency / 5;
        if (since < frequency * 3 / 2)
        {
            var beforeGapLimit = frequency * 7 / 5 - since; // time left until 1.4 intervals since the last one
            window = TimeSpan.FromTicks(Math.Clamp(beforeGapLimit.Ticks, 0, window.Ticks));
        }
        return nowUtc + window * random;
    }

    /// <summary>
    /// Start to start: the snapshot after one due at <paramref name="dueUtc"/> is due one interval later,
    /// however long this one takes; a server that fell a whole interval behind does not try to catch up.
    /// </summary>
    public static DateTime NextDue(DateTime dueUtc, TimeSpan frequency, DateTime nowUtc)
    {
        var next = dueUtc + frequency;
        return next <= nowUtc ? nowUtc + frequency : next;
    }

    /// <summary>Exponential backoff with jitter: min × 2^(failures-1), at most max, ±20 %.</summary>
    public static TimeSpan Backoff(int failures, TimeSpan min, TimeSpan max, double random)
    {
        var ms = min.TotalMilliseconds * Math.Pow(2, Math.Clamp(failures - 1, 0, 16));
        ms = Math.Min(ms, max.TotalMilliseconds);
        return TimeSpan.FromMilliseconds(ms * (0.8 + 0.4 * random));
    }
}
