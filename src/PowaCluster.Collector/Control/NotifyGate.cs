namespace PowaCluster.Collector.Control;

/// <summary>What the coordinator learnt of a sending backend: its role, and whether that role may drive the collector.</summary>
public readonly record struct SenderVerdict(uint Role, string RoleName, bool Allowed);

/// <summary>A notification's place in the gate, handed back with <see cref="NotifyGate.Release"/>.</summary>
public readonly record struct GateTicket(int SenderPid, long Bucket);

/// <summary>
/// Bounds the NOTIFY requests waiting for the coordinator, per role. Anyone who can connect to the repository
/// can send <c>SELECT pg_notify('powa_collector', ...) FROM generate_series(1, 100000)</c>, from as many
/// sessions as the role may open; a NOTIFY carries only its sender's pid. So a notification from a backend
/// whose role is known counts against that role (<see cref="MaxPerRole"/>), and one from a backend not yet
/// checked against a small share per backend and a bound for all unchecked ones: twenty sessions of one login
/// take what one role may, not the whole gate, and powa-web's next request still finds room. A backend whose
/// role was refused is dropped here, before it costs a message. What a backend is holds <see cref="VerdictFor"/>
/// (a pid is reused after its backend exits). A refused role is answered once per <see cref="RefusalQuiet"/>
/// (<see cref="FirstRefusal"/>): replies go to a channel the sender names. Thread-safe: the listener admits
/// on Npgsql's thread, the coordinator learns, releases and asks on its own.
/// </summary>
public sealed class NotifyGate(TimeProvider? time = null, Telemetry.CollectorMetrics? metrics = null)
{
    public int MaxPending { get; init; } = 1000;
    public int MaxPerRole { get; init; } = 50;
    public int MaxUnchecked { get; init; } = 200;
    public int MaxPerUncheckedSender { get; init; } = 5;
    public TimeSpan VerdictFor { get; init; } = TimeSpan.FromSeconds(5);
    public TimeSpan RefusalQuiet { get; init; } = TimeSpan.FromHours(1);

    readonly TimeProvider _time = time ?? TimeProvider.System;
    readonly object _lock = new();
    readonly Dictionary<long, int> _perBucket = [];           // role oid, or -1 - pid for an unchecked backend
    readonly Dictionary<int, (SenderVerdict Verdict, DateTimeOffset Until)> _senders = [];
    readonly Dictionary<uint, DateTimeOffset> _refusalAnswered = [];
    int _pending, _unchecked;
    long _dropped;

    /// <summary>Admits a notification from <paramref name="senderPid"/>, or drops it (counted).</summary>
    public bool TryAdmit(int senderPid, out GateTicket ticket)
    {
        ticket = default;
        lock (_lock)
        {
            long bucket;
            int bound;
            if (KnownLocked(senderPid) is { } v)
            {
                if (!v.Allowed) return DropLocked();
                bucket = v.Role;
                bound = MaxPerRole;
            }
            else
            {
                if (_unchecked >= MaxUnchecked) return DropLocked();
                bucket = -1L - senderPid;
                bound = MaxPerUncheckedSender;
            }
            _perBucket.TryGetValue(bucket, out var mine);
            if (_pending >= MaxPending || mine >= bound) return DropLocked();
            _pending++;
            if (bucket < 0) _unchecked++;
            _perBucket[bucket] = mine + 1;
            ticket = new GateTicket(senderPid, bucket);
            return true;
        }
    }

    /// <summary>The coordinator is done with a notification it was given.</summary>
    public void Release(GateTicket ticket)
    {
        lock (_lock)
        {
            if (!_perBucket.TryGetValue(ticket.Bucket, out var mine)) return;
            if (mine <= 1) _perBucket.Remove(ticket.Bucket);
            else _perBucket[ticket.Bucket] = mine - 1;
            if (_pending > 0) _pending--;
            if (ticket.Bucket < 0 && _unchecked > 0) _unchecked--;
        }
    }

    /// <summary>What the repository said about a sending backend; it holds <see cref="VerdictFor"/>.</summary>
    public void Learn(int senderPid, SenderVerdict verdict)
    {
        lock (_lock)
        {
            var now = _time.GetUtcNow();
            if (_senders.Count >= 10_000)
                foreach (var pid in _senders.Where(kv => kv.Value.Until <= now).Select(kv => kv.Key).ToList()) _senders.Remove(pid);
            _senders[senderPid] = (verdict, now + VerdictFor);
        }
    }

    /// <summary>What is known of a sending backend, if it is still recent.</summary>
    public SenderVerdict? Known(int senderPid)
    {
        lock (_lock) return KnownLocked(senderPid);
    }

    /// <summary>
    /// Whether a refusal of <paramref name="role"/> is to be answered and logged: the first one, then none for
    /// <see cref="RefusalQuiet"/> (counted by the caller).
    /// </summary>
    public bool FirstRefusal(uint role)
    {
        lock (_lock)
        {
            var now = _time.GetUtcNow();
            if (_refusalAnswered.TryGetValue(role, out var at) && now - at < RefusalQuiet) return false;
            if (_refusalAnswered.Count >= 10_000)
                foreach (var r in _refusalAnswered.Where(kv => now - kv.Value >= RefusalQuiet).Select(kv => kv.Key).ToList())
                    _refusalAnswered.Remove(r);
            _refusalAnswered[role] = now;
            return true;
        }
    }

    /// <summary>Notifications dropped since the start.</summary>
    public long Dropped { get { lock (_lock) return _dropped; } }

    SenderVerdict? KnownLocked(int senderPid) =>
        _senders.TryGetValue(senderPid, out var s) && s.Until > _time.GetUtcNow() ? s.Verdict : null;

    bool DropLocked()
    {
        _dropped++;
        metrics?.NotifyRequests.Add(1, new KeyValuePair<string, object?>("outcome", "dropped"));
        return false;
    }
}
