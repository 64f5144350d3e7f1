namespace PowaCluster.Collector.Control;

/// <summary>
/// Bounds the NOTIFY requests waiting for the coordinator. Anyone who can connect to the repository can send
/// <c>SELECT pg_notify('powa_collector', ...) FROM generate_series(1, 100000)</c>; unbounded, each became a
/// mailbox message, a permission query, a log line and a reply (measured before: powa-web's WORKERS_STATUS
/// unanswered after 30 s, 377 MB). The listener admits a notification only while fewer than
/// <see cref="MaxPending"/> wait in all and fewer than <see cref="MaxPerSender"/> from its backend, so one
/// flooding backend cannot crowd out powa-web's; the rest are dropped and counted. Thread-safe: the listener
/// admits on Npgsql's thread, the coordinator releases on its own.
/// </summary>
public sealed class NotifyGate(int maxPending = 1000, int maxPerSender = 50)
{
    readonly object _lock = new();
    readonly Dictionary<int, int> _perSender = [];
    int _pending;
    long _dropped;

    public int MaxPending => maxPending;
    public int MaxPerSender => maxPerSender;

    public bool TryAdmit(int senderPid)
    {
        lock (_lock)
        {
            _perSender.TryGetValue(senderPid, out var mine);
            if (_pending >= maxPending || mine >= maxPerSender)
            {
                _dropped++;
                Telemetry.CollectorMetrics.NotifyRequests.Add(1, new KeyValuePair<string, object?>("outcome", "dropped"));
                return false;
            }
            _pending++;
            _perSender[senderPid] = mine + 1;
            return true;
        }
    }

    /// <summary>The coordinator is done with a notification it was given.</summary>
    public void Release(int senderPid)
    {
        lock (_lock)
        {
            if (_pending > 0) _pending--;
            if (!_perSender.TryGetValue(senderPid, out var mine)) return;
            if (mine <= 1) _perSender.Remove(senderPid);
            else _perSender[senderPid] = mine - 1;
        }
    }

    /// <summary>Notifications dropped since the start.</summary>
    public long Dropped { get { lock (_lock) return _dropped; } }
}
