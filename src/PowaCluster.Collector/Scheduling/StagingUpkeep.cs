namespace PowaCluster.Collector.Scheduling;

/// <summary>
/// When the node's writers vacuum the repository's *_src_tmp tables (what the writer pool decides; why:
/// docs/architecture.md, "Staging tables"): an interval after the first store, then an interval after the
/// previous vacuum began, only when something was stored since, and never two at once. A zero interval: never.
/// </summary>
public sealed class StagingUpkeep(TimeSpan interval)
{
    DateTime? _since;   // the last vacuum's start, or the first store
    bool _stored;       // stored since then
    bool _running;

    /// <summary>A snapshot was stored: true when a vacuum is due now (the caller queues it and calls Started).</summary>
    public bool Stored(DateTime nowUtc)
    {
        if (interval <= TimeSpan.Zero) return false;
        _since ??= nowUtc;
        _stored = true;
        return !_running && nowUtc - _since.Value >= interval;
    }

    public void Started(DateTime nowUtc)
    {
        _since = nowUtc;
        _stored = false;
        _running = true;
    }

    /// <summary>The vacuum is over (done, failed or dropped): true when stores since then make the next one due at once.</summary>
    public bool Finished(DateTime nowUtc)
    {
        _running = false;
        return _stored && nowUtc - _since!.Value >= interval;
    }
}
