namespace PowaCluster.Collector.Staging;

/// <summary>
/// The node's memory for staged snapshots, shared by every server of the node. A stage takes memory a
/// segment at a time while the budget allows, and writes the rest to a file in <see cref="Directory"/>.
/// Thread-safe: stages fill on the thread pool.
/// </summary>
public sealed class StageBudget
{
    long _used, _spilledStages, _spilledBytes, _spillFailures;

    public StageBudget(long limitBytes, string directory)
    {
        LimitBytes = Math.Max(0, limitBytes);
        Directory = directory;
    }

    public long LimitBytes { get; }

    /// <summary>Where stages that outgrow the budget write the rest of their bytes (created on first use).</summary>
    public string Directory { get; }

    public long UsedBytes => Interlocked.Read(ref _used);

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

    public StageStats Stats() => new(LimitBytes, UsedBytes, Interlocked.Read(ref _spilledStages),
        Interlocked.Read(ref _spilledBytes), Interlocked.Read(ref _spillFailures));

    /// <summary>The default spill directory of this process: private to it, under the system's temporary directory.</summary>
    public static string DefaultDirectory() =>
        Path.Combine(Path.GetTempPath(), $"powa-cluster-stage-{Environment.ProcessId}");
}

/// <summary>Stage memory in use, and how many stages (and bytes) went to a file since start.</summary>
public sealed record StageStats(long LimitBytes, long UsedBytes, long SpilledStages, long SpilledBytes, long SpillFailures);
