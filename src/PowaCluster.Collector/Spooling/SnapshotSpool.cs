using System.Security.Cryptography;
using System.Text;
using PowaCluster.Collector.Staging;

namespace PowaCluster.Collector.Spooling;

/// <summary>One spooled snapshot: its file, when it was taken, its sequence when it was read, its size.</summary>
public sealed record SpoolEntry(int SrvId, string Path, DateTime TakenAtUtc, long Sequence, long Bytes);

/// <summary>Node totals since start, and what the spool holds now.</summary>
public sealed record SpoolStats(int Snapshots, long Bytes, DateTime? OldestUtc, long Spooled, long Replayed,
    long Dropped, long WriteFailures);

/// <summary>
/// The node's spool: snapshots read while the repository could not store them, on the node's disk, one file per
/// snapshot (SpoolFile) in a directory per server, under a directory per repository (a spool is only ever
/// replayed into the repository it was read for). A lock file keeps a second process off it. Bounded: beyond
/// MaxBytes (node-wide) or MaxAge the oldest snapshots are deleted first, counted per server. Thread-safe:
/// snapshots are spooled from read tasks and from writers, and replayed by entities and the node's keeper.
/// </summary>
public sealed class SnapshotSpool : IDisposable
{
    readonly Lock _lock = new();
    readonly Dictionary<int, ServerSpool> _servers = [];
    readonly FileStream? _lockFile;
    readonly TimeProvider _time;
    long _bytes, _spooled, _replayed, _dropped, _writeFailures;

    SnapshotSpool(string directory, long maxBytes, TimeSpan maxAge, StageBudget stages, string? problem, FileStream? lockFile,
        TimeProvider time)
    {
        (Directory, MaxBytes, MaxAge, Stages, Problem, _lockFile, _time) = (directory, maxBytes, maxAge, stages, problem, lockFile, time);
    }

    /// <summary>This node's spool for one repository; never throws: a spool that cannot be used says why in Problem.</summary>
    /// <param name="root">the configured directory; the spool is its subdirectory for the repository</param>
    /// <param name="identity">what the repository is (RepositoryQueries.IdentityAsync): names the subdirectory, so
    /// the same repository reached under another name (localhost for 127.0.0.1, a host list after a failover,
    /// another user) finds its backlog, and another one spelled alike does not; null when it cannot be read</param>
    /// <param name="repository">the repository, as host:port/dbname (no password): names the subdirectory without an
    /// identity, as earlier builds did; such a directory for this DSN is moved to the identity's when there is none</param>
    /// <param name="time">the clock MaxAge is measured with (the system's by default)</param>
    public static SnapshotSpool Open(string root, string? identity, string repository, long maxBytes, TimeSpan maxAge, StageBudget stages,
        TimeProvider? time = null)
    {
        time ??= TimeProvider.System;
        var byName = Path.Combine(root, "repo-" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(repository)))[..16]);
        var dir = identity is not null && IdentityPattern.IsMatch(identity) ? Path.Combine(root, "repo-" + identity) : byName;
        string? moved = null;
        if (dir != byName && maxBytes > 0 && !System.IO.Directory.Exists(dir) && System.IO.Directory.Exists(byName))
        {
            try
            {
                System.IO.Directory.Move(byName, dir);
                moved = $"the spool of an earlier build for {repository} ({byName}) is now {dir}";
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                moved = $"the spool of an earlier build for {repository} ({byName}) could not be moved to {dir}, and is not replayed: {e.Message}";
            }
        }
        if (maxBytes <= 0) return new SnapshotSpool(dir, 0, maxAge, stages, "the spool is off (SpoolMaxBytes is 0)", null, time);
        FileStream? lockFile = null;
        try
        {
            System.IO.Directory.CreateDirectory(dir, OwnerOnlyDirectory);
            // An existing directory keeps its owner and mode when created again: what others may write is never
            // replayed (one this process may not make its own cannot be used: the spool says why).
            OwnedPath.Claim(dir, OwnerOnlyDirectory);
            File.WriteAllText(Path.Combine(dir, "repository"), repository + "\n" + (identity is null ? "" : $"identity {identity}\n"));
            lockFile = new FileStream(Path.Combine(dir, "spool.lock"), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            lockFile?.Dispose();
            var why = e is IOException && File.Exists(Path.Combine(dir, "spool.lock"))
                ? $"the spool {dir} is in use by another powa-cluster process (each node needs a spool directory of its own): {e.Message}"
                : $"the spool directory {dir} cannot be used: {e.Message}";
            return new SnapshotSpool(dir, maxBytes, maxAge, stages, why, null, time);
        }
        var spool = new SnapshotSpool(dir, maxBytes, maxAge, stages, null, lockFile, time) { Moved = moved };
        spool.Scan();
        return spool;
    }

    static readonly System.Text.RegularExpressions.Regex IdentityPattern = new("^[0-9]{1,20}-[0-9]{1,10}$");

    /// <summary>The server directories found at Open that this process could not make its own, and why (for the log).</summary>
    public List<string> NotScanned { get; } = [];

    /// <summary>What became of an earlier build's spool for this repository's DSN at Open, for the log; null: nothing.</summary>
    public string? Moved { get; private init; }

    const UnixFileMode OwnerOnlyDirectory = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    public string Directory { get; }
    public long MaxBytes { get; }
    public TimeSpan MaxAge { get; }
    internal StageBudget Stages { get; }

    /// <summary>Why nothing can be spooled on this node (then snapshots the repository cannot take are lost, as before); null: usable.</summary>
    public string? Problem { get; }
    public bool Usable => Problem is null;

    /// <summary>The spool of one server (created empty when it has none).</summary>
    public ServerSpool For(int srvId)
    {
        lock (_lock)
        {
            if (!_servers.TryGetValue(srvId, out var s)) _servers[srvId] = s = new ServerSpool(this, srvId);
            return s;
        }
    }

    /// <summary>The servers with something spooled.</summary>
    public IReadOnlyList<ServerSpool> WithBacklog()
    {
        lock (_lock) return _servers.Values.Where(s => s.CountUnlocked > 0).ToList();
    }

    public SpoolStats Stats()
    {
        lock (_lock)
        {
            var oldest = _servers.Values.Select(s => s.OldestUnlocked).Where(t => t is not null).Min();
            return new SpoolStats(_servers.Values.Sum(s => s.CountUnlocked), _bytes, oldest, _spooled, _replayed, _dropped,
                _writeFailures);
        }
    }

    internal Lock SyncRoot => _lock;

    /// <summary>A file was added (under the lock): counts it, then applies the bounds.</summary>
    internal List<SpoolEntry> AddedUnlocked(SpoolEntry added)
    {
        _bytes += added.Bytes;
        _spooled++;
        return DropBeyondBoundsUnlocked(_time.GetUtcNow().UtcDateTime, added);
    }

    /// <summary>
    /// Deletes the oldest snapshots beyond MaxAge, then while the spool is over MaxBytes (never the one in
    /// flight, nor <paramref name="keep"/>, the one just written); returns them (their files gone).
    /// </summary>
    internal List<SpoolEntry> DropBeyondBoundsUnlocked(DateTime nowUtc, SpoolEntry? keep = null)
    {
        var dropped = new List<SpoolEntry>();
        while (true)
        {
            ServerSpool? from = null;
            SpoolEntry? oldest = null;
            foreach (var s in _servers.Values)
                if (s.OldestDroppableUnlocked is { } o && !ReferenceEquals(o, keep) && (oldest is null || o.TakenAtUtc < oldest.TakenAtUtc))
                    (from, oldest) = (s, o);
            if (from is null || oldest is null) break;
            if (_bytes <= MaxBytes && nowUtc - oldest.TakenAtUtc <= MaxAge) break;
            from.DropUnlocked(oldest);
            dropped.Add(oldest);
        }
        return dropped;
    }

    internal void RemovedUnlocked(SpoolEntry e, bool dropped, bool replayed, bool deleteFile = true)
    {
        _bytes -= e.Bytes;
        if (dropped) _dropped++;
        if (replayed) _replayed++;
        if (!deleteFile) return;
        try { File.Delete(e.Path); } catch (Exception) { /* gone already, or the next start retries */ }
    }

    readonly List<string> _warnings = [];

    /// <summary>Where the spool's own warnings go (the bounds' drops, once per server); set by the node.</summary>
    public Action<string>? Warn { get; set; }

    internal void WarnLater(string message) => _warnings.Add(message); // under the lock

    internal void FlushWarnings()
    {
        string[] pending;
        lock (_lock)
        {
            if (_warnings.Count == 0) return;
            pending = [.. _warnings];
            _warnings.Clear();
        }
        foreach (var w in pending) Warn?.Invoke(w);
    }

    /// <summary>Applies MaxAge now (a spool nobody writes to still ages).</summary>
    public void Expire()
    {
        lock (_lock) DropBeyondBoundsUnlocked(_time.GetUtcNow().UtcDateTime);
        FlushWarnings();
    }

    internal void CountWriteFailure() => Interlocked.Increment(ref _writeFailures);

    /// <summary>At start: what a previous process on this node spooled (a .part file is a write it did not finish).</summary>
    void Scan()
    {
        foreach (var dir in System.IO.Directory.EnumerateDirectories(Directory, "srv*"))
        {
            if (!int.TryParse(Path.GetFileName(dir)[3..], System.Globalization.NumberStyles.None, null, out var srvId)) continue;
            // A directory this process may not make its own is not replayed (it stays; the node's spool is used).
            try { OwnedPath.Claim(dir, OwnerOnlyDirectory); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                NotScanned.Add($"{dir} is not replayed: {e.Message}");
                continue;
            }
            foreach (var part in System.IO.Directory.EnumerateFiles(dir, "*" + SpoolFile.PartExtension))
                try { File.Delete(part); } catch (Exception) { /* left; ignored */ }
            var server = For(srvId);
            foreach (var file in System.IO.Directory.EnumerateFiles(dir, "*" + SpoolFile.Extension))
                if (ServerSpool.ParseName(srvId, file) is { } entry)
                    lock (_lock)
                    {
                        server.AddUnlocked(entry);
                        _bytes += entry.Bytes;
                    }
        }
    }

    public void Dispose() => _lockFile?.Dispose();
}
