namespace PowaCluster.Collector.Staging;

/// <summary>
/// The node's memory for staged snapshots, shared by every server of the node. A stage takes memory a
/// segment at a time while the budget allows, and writes the rest to a file in <see cref="Directory"/>.
/// Thread-safe: stages fill on the thread pool.
/// </summary>
public sealed class StageBudget
{
    long _used, _fileBytes, _spilledStages, _spilledBytes, _spillFailures;
    readonly string? _configured;
    readonly Lock _lock = new();
    string? _private;

    /// <param name="directory">where spilled stages go (created, mode 0700, at the first spill); null: a private
    /// directory of this process under the system's temporary directory, created with a random name at the
    /// first spill (nobody can have prepared it) and removed when the process exits</param>
    /// <param name="fileLimitBytes">bytes of stage files beyond which servers stop reading ahead (a server's only
    /// snapshot not stored yet may still go to a file): what a slow repository may cost the node's disk</param>
    /// <param name="maxStageBytes">the most bytes one stage may hold (MaxSnapshotBytes)</param>
    public StageBudget(long limitBytes, string? directory, long fileLimitBytes = long.MaxValue, long maxStageBytes = long.MaxValue)
    {
        LimitBytes = Math.Max(0, limitBytes);
        FileLimitBytes = Math.Max(0, fileLimitBytes);
        MaxStageBytes = maxStageBytes;
        _configured = string.IsNullOrWhiteSpace(directory) ? null : directory;
    }

    public long LimitBytes { get; }
    public long FileLimitBytes { get; }
    public long MaxStageBytes { get; }

    /// <summary>Where stages that outgrow the budget write the rest of their bytes, for messages.</summary>
    public string Directory => _configured ?? _private ?? $"a private directory under {Path.GetTempPath()}";

    /// <summary>The spill directory, created on first use.</summary>
    internal string EnsureDirectory()
    {
        if (_configured is { } dir)
        {
            System.IO.Directory.CreateDirectory(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            return dir;
        }
        lock (_lock)
        {
            if (_private is null)
            {
                var created = System.IO.Directory.CreateTempSubdirectory("powa-cluster-stage-").FullName;
                AppDomain.CurrentDomain.ProcessExit += (_, _) =>
                {
                    try { System.IO.Directory.Delete(created, recursive: true); } catch (Exception) { /* best effort */ }
                };
                _private = created;
            }
            return _private;
        }
    }

    public long UsedBytes => Interlocked.Read(ref _used);

    /// <summary>Bytes in the stage files open now.</summary>
    public long FileBytes => Interlocked.Read(ref _fileBytes);

    /// <summary>
    /// Whether a server may read a snapshot while another of its own waits for the repository: while the
    /// memory budget has room, or else the stage files do.
    /// </summary>
    public bool HasRoomToReadAhead => UsedBytes < LimitBytes || FileBytes < FileLimitBytes;

    internal void AddFileBytes(long bytes) => Interlocked.Add(ref _fileBytes, bytes);

    public bool TryReserve(long bytes)
    {
        while (true)
        {
            var used = Interlocked.Read(ref _used);
            if (used + bytes > LimitBytes) return false;
            if (Interlocked.CompareExchange(ref _used, used + bytes, used) == used) return true;
        }
    }

    public void Release(long bytes) => Interlocked.Add(ref _used, -bytes);

    internal void CountSpill(long bytes)
    {
        Interlocked.Increment(ref _spilledStages);
        Interlocked.Add(ref _spilledBytes, bytes);
    }

    internal void CountSpillFailure() => Interlocked.Increment(ref _spillFailures);

    public StageStats Stats() => new(LimitBytes, UsedBytes, FileBytes, Interlocked.Read(ref _spilledStages),
        Interlocked.Read(ref _spilledBytes), Interlocked.Read(ref _spillFailures));
}

/// <summary>Stage memory and files in use, and how many stages (and bytes) went to a file since start.</summary>
public sealed record StageStats(long LimitBytes, long UsedBytes, long FileBytes, long SpilledStages, long SpilledBytes, long SpillFailures);
