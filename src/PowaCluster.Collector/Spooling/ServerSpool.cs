using System.Globalization;
using PowaCluster.Collector.Staging;

namespace PowaCluster.Collector.Spooling;

/// <summary>
/// One server's spooled snapshots on this node, oldest first. They are stored one at a time, oldest first
/// (TakeOldest marks the one in flight; Stored deletes its file after the repository's commit, Release gives
/// it back after a failure). Whoever replays them (the server's entity on this node, else the node's
/// SpoolKeeper) goes through the same object, so one snapshot is never in flight twice.
/// </summary>
public sealed class ServerSpool
{
    readonly SnapshotSpool _node;
    readonly List<SpoolEntry> _entries = []; // by TakenAtUtc
    SpoolEntry? _inFlight;
    long _bytes, _dropped;

    internal ServerSpool(SnapshotSpool node, int srvId) => (_node, SrvId) = (node, srvId);

    public int SrvId { get; }
    string DirectoryPath => Path.Combine(_node.Directory, $"srv{SrvId}");

    public int Count { get { lock (_node.SyncRoot) return _entries.Count; } }
    public long Bytes { get { lock (_node.SyncRoot) return _bytes; } }
    public DateTime? OldestUtc { get { lock (_node.SyncRoot) return OldestUnlocked; } }
    public DateTime? NewestUtc { get { lock (_node.SyncRoot) return _entries.Count > 0 ? _entries[^1].TakenAtUtc : null; } }

    /// <summary>Snapshots of this server dropped by the bounds since it last had an empty spool.</summary>
    public long Dropped { get { lock (_node.SyncRoot) return _dropped; } }

    internal int CountUnlocked => _entries.Count;
    internal DateTime? OldestUnlocked => _entries.Count > 0 ? _entries[0].TakenAtUtc : null;
    internal SpoolEntry? OldestDroppableUnlocked => _entries.FirstOrDefault(e => !ReferenceEquals(e, _inFlight));

    /// <summary>
    /// Writes the stage to this server's spool, durably, then applies the node's bounds; returns the entry and
    /// the snapshots the bounds dropped. A SpoolException when it cannot be written (a full or read-only disk).
    /// </summary>
    public async Task<(SpoolEntry Entry, IReadOnlyList<SpoolEntry> Dropped)> WriteAsync(SnapshotStage stage, long sequence, CancellationToken ct)
    {
        if (_node.Problem is { } problem) throw new SpoolException(problem);
        var name = $"{stage.TakenAtUtc.Ticks:D19}-{sequence}-{Guid.NewGuid():N}"[..48] + SpoolFile.Extension;
        long bytes;
        try
        {
            Directory.CreateDirectory(DirectoryPath, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            bytes = await SpoolFile.WriteAsync(Path.Combine(DirectoryPath, name), stage, sequence, ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _node.CountWriteFailure();
            throw e as SpoolException ?? new SpoolException($"cannot write the spool in {DirectoryPath}: {e.Message}");
        }
        var entry = new SpoolEntry(SrvId, Path.Combine(DirectoryPath, name), stage.TakenAtUtc, sequence, bytes);
        List<SpoolEntry> dropped;
        lock (_node.SyncRoot)
        {
            AddUnlocked(entry);
            dropped = _node.AddedUnlocked(entry);
        }
        _node.FlushWarnings();
        return (entry, dropped);
    }

    /// <summary>The oldest snapshot, now in flight; null when there is none or one is in flight already.</summary>
    public SpoolEntry? TakeOldest()
    {
        lock (_node.SyncRoot)
        {
            if (_inFlight is not null || _entries.Count == 0) return null;
            return _inFlight = _entries[0];
        }
    }

    /// <summary>Not stored (the repository failed): it stays, first in line.</summary>
    public void Release(SpoolEntry e)
    {
        lock (_node.SyncRoot) if (ReferenceEquals(_inFlight, e)) _inFlight = null;
    }

    /// <summary>Committed by the repository (or refused for good, <paramref name="replayed"/> false): its file goes.</summary>
    public void Remove(SpoolEntry e, bool replayed)
    {
        lock (_node.SyncRoot)
        {
            if (ReferenceEquals(_inFlight, e)) _inFlight = null;
            if (!_entries.Contains(e)) return;
            ForgetUnlocked(e, dropped: !replayed, replayed);
            if (_entries.Count == 0) _dropped = 0;
        }
    }

    /// <summary>
    /// Its stage, read back from the file: a SpoolException when the file cannot be read now, a
    /// StageRejectedException when it is not one this collector wrote for this server (then Reject it).
    /// </summary>
    public Task<SnapshotStage> OpenAsync(SpoolEntry e, CancellationToken ct) => SpoolFile.OpenAsync(e.Path, SrvId, _node.Stages, ct);

    /// <summary>Where files that are not what this collector writes are moved, in the server's directory.</summary>
    public const string RejectedDirectory = "rejected";

    /// <summary>
    /// Not what this collector writes (SpoolFile.OpenAsync or the repository said why): the file is moved to
    /// <see cref="RejectedDirectory"/> for whoever wants to look at it, never stored, and said once.
    /// </summary>
    public void Reject(SpoolEntry e, string why)
    {
        var aside = Path.Combine(DirectoryPath, RejectedDirectory);
        string where;
        try
        {
            Directory.CreateDirectory(aside, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            File.Move(e.Path, Path.Combine(aside, Path.GetFileName(e.Path)), overwrite: true);
            where = $"moved to {aside}";
        }
        catch (Exception x) when (x is IOException or UnauthorizedAccessException)
        {
            where = $"left where it is (it cannot be moved to {aside}: {x.Message}; it is not tried again until the node restarts)";
        }
        lock (_node.SyncRoot)
        {
            if (ReferenceEquals(_inFlight, e)) _inFlight = null;
            if (_entries.Remove(e))
            {
                _bytes -= e.Bytes;
                _node.RemovedUnlocked(e, dropped: true, replayed: false, deleteFile: false);
            }
            if (_entries.Count == 0) _dropped = 0;
            _node.WarnLater($"Server {SrvId}: spooled snapshot {Path.GetFileName(e.Path)} rejected, {where}: {why}");
        }
        _node.FlushWarnings();
    }

    internal void AddUnlocked(SpoolEntry e)
    {
        var i = _entries.Count;
        while (i > 0 && _entries[i - 1].TakenAtUtc > e.TakenAtUtc) i--;
        _entries.Insert(i, e);
        _bytes += e.Bytes;
    }

    /// <summary>Deleted by the node's bounds: counted for this server, said once until its spool is empty again.</summary>
    internal void DropUnlocked(SpoolEntry e)
    {
        if (++_dropped == 1)
            _node.WarnLater($"Server {SrvId}: the node's spool is beyond its bounds ({_node.MaxBytes / 1048576.0:0.##} MB, " +
                            $"{_node.MaxAge.TotalHours:F0} h): this server's oldest spooled snapshots are dropped, the first one taken at " +
                            $"{e.TakenAtUtc:yyyy-MM-dd HH:mm:ss} UTC (said once until its spool is empty again; powa_spool_dropped counts them)");
        ForgetUnlocked(e, dropped: true, replayed: false);
    }

    void ForgetUnlocked(SpoolEntry e, bool dropped, bool replayed)
    {
        _entries.Remove(e);
        _bytes -= e.Bytes;
        _node.RemovedUnlocked(e, dropped, replayed);
    }

    /// <summary>An entry from a file name written by WriteAsync (ticks-sequence-random.snap); null for anything else.</summary>
    internal static SpoolEntry? ParseName(int srvId, string path)
    {
        var parts = Path.GetFileNameWithoutExtension(path).Split('-');
        if (parts.Length < 2 || !long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var ticks)
            || !long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var seq)
            || ticks < DateTime.MinValue.Ticks || ticks > DateTime.MaxValue.Ticks) return null;
        try { return new SpoolEntry(srvId, path, new DateTime(ticks, DateTimeKind.Utc), seq, new FileInfo(path).Length); }
        catch (IOException) { return null; }
    }
}
