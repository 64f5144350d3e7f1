using PowaCluster.Lab.Bench;

namespace PowaCluster.Lab.Scale;

/// <summary>
/// What the repository says of a cold start: servers not snapshotted within their first two intervals, and
/// the interval error of the gaps that start after those two intervals (each snapshot's remote timestamp).
/// </summary>
public sealed record FleetFigures(int Servers, int NotWithinTwo, int Never, int Snapshots, double P50, double P99, double MaxGapSeconds,
    TimeSpan Frequency)
{
    public static FleetFigures From(IReadOnlyList<int> ids, Dictionary<int, List<DateTime>> times, DateTime t0, DateTime tEnd, TimeSpan freq)
    {
        var settled = t0 + 2 * freq;
        var notWithin = ids.Count(id => !times.TryGetValue(id, out var t) || t.Count == 0 || t[0] > settled);
        var never = ids.Count(id => !times.TryGetValue(id, out var t) || t.Count == 0);
        var after = times.ToDictionary(kv => kv.Key, kv => kv.Value.Where(x => x >= settled).ToList());
        var errors = SnapshotLog.IntervalErrors(after, freq);
        var maxGap = after.Values.SelectMany(t => t.Zip(t.Skip(1), (a, b) => (b - a).TotalSeconds)).DefaultIfEmpty(double.NaN).Max();
        return new FleetFigures(ids.Count, notWithin, never, times.Values.Sum(t => t.Count),
            SnapshotLog.Percentile(errors, 0.5) * 100, SnapshotLog.Percentile(errors, 0.99) * 100, maxGap, freq);
    }

    public bool Pass => NotWithinTwo == 0 && P99 <= 2;

    public string Summary(int nodes, ScaleWatch watch) =>
        $"scale summary: {Servers} servers at {Frequency.TotalSeconds:F0} s on {nodes} nodes: {Snapshots} snapshots stored; " +
        $"servers not snapshotted within their first two intervals {NotWithinTwo} (never {Never}); after them, interval error " +
        $"p50 {P50:F2} % p99 {P99:F2} %, longest gap {MaxGapSeconds:F1} s; largest deviation of a node's servers from the mean " +
        $"since the first allocation {watch.MaxSpreadPercent:F1} %";
}
