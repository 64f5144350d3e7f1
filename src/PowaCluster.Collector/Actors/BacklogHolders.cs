namespace PowaCluster.Collector.Actors;

/// <summary>
/// The other nodes that hold spooled snapshots of one server (BacklogHeld), as its entity sees them, and whose
/// turn it is to store: a plain class, decided without Akka (the entity's ServerCollector delivers and sends).
/// A server's snapshots are stored oldest first whichever node holds them (docs/architecture.md, "Spool").
/// </summary>
/// <typeparam name="TKeeper">how a holder is answered (its SpoolKeeper's actor reference)</typeparam>
public sealed class BacklogHolders<TKeeper>(TimeProvider time)
{
    /// <summary>
    /// A holder not heard from for this long is forgotten: longer than a node's restart, since a node that stops
    /// with snapshots its writers could not store spools them (after up to HandOffTimeout, 30 s), and says so
    /// within a sweep (10 s) of its start again; meanwhile the entity's own wait in its spool.
    /// </summary>
    public static readonly TimeSpan Silence = TimeSpan.FromSeconds(90);

    /// <summary>How long an entity listens for holders before it stores or gives a turn (a sweep, and some).</summary>
    public static readonly TimeSpan ListenFor = TimeSpan.FromSeconds(12);

    sealed record Holder(DateTime HeardUtc, DateTime OldestUtc, TKeeper Keeper);

    readonly Dictionary<string, Holder> _holders = [];
    bool _listening, _listened;

    DateTime CurrentUtc => time.GetUtcNow().UtcDateTime;

    /// <summary>Some holder is known, or the entity still listens for them.</summary>
    public bool Any => _holders.Count > 0 || _listening;

    /// <summary>
    /// The oldest snapshot another node holds; while the entity listens, the earliest time there is (nothing
    /// of its own is stored before it has heard every holder); null when none.
    /// </summary>
    public DateTime? OldestElsewhere => _listening ? DateTime.MinValue : _holders.Count > 0 ? _holders.Values.Min(h => h.OldestUtc) : null;

    /// <summary>A holder said what it holds; true when it was not known.</summary>
    public bool Heard(string holder, DateTime oldestUtc, TKeeper keeper)
    {
        var known = _holders.ContainsKey(holder);
        _holders[holder] = new Holder(CurrentUtc, oldestUtc, keeper);
        return !known;
    }

    /// <summary>Starts listening, once per entity; true when it starts now (the caller then waits ListenFor, and calls Listened).</summary>
    public bool Listen()
    {
        if (_listened) return false;
        _listened = _listening = true;
        return true;
    }

    public void Listened() => _listening = false;

    /// <summary>The holder's backlog is stored; true when it was known.</summary>
    public bool Drained(string holder) => _holders.Remove(holder);

    /// <summary>Forgets the holders not heard from for Silence; returns them.</summary>
    public IReadOnlyList<string> Expire()
    {
        var gone = _holders.Where(h => CurrentUtc - h.Value.HeardUtc > Silence).Select(h => h.Key).ToList();
        foreach (var holder in gone) _holders.Remove(holder);
        return gone;
    }

    /// <summary>
    /// Whose turn it is, given the oldest snapshot the entity holds itself (null: none): the holder of the oldest,
    /// for what it holds taken before the next oldest anyone else holds (another holder, or the entity: backlogs
    /// of a server moved several times interleave in time; null: all). None while listening, or when the entity's
    /// own are the oldest.
    /// </summary>
    public (TKeeper Keeper, DateTime? UntilUtc)? Turn(DateTime? ownOldestUtc)
    {
        if (_listening || _holders.Count == 0) return null;
        var first = _holders.Values.MinBy(h => h.OldestUtc)!;
        if (ownOldestUtc is { } mine && first.OldestUtc > mine) return null;
        var until = _holders.Values.Where(h => !ReferenceEquals(h, first)).Select(h => (DateTime?)h.OldestUtc).Append(ownOldestUtc)
            .Where(t => t is not null).DefaultIfEmpty(null).Min();
        return (first.Keeper, until);
    }
}
