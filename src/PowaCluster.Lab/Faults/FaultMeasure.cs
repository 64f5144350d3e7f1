using Npgsql;
using PowaCluster.Lab.Bench;

namespace PowaCluster.Lab.Faults;

/// <summary>One row of the fault table.</summary>
public sealed record FaultRow(string Fault, bool Alive, int Due, int Stored, double LongestGapSeconds, double ShortestGapSeconds,
    int StuckInTransaction, double? ResumedAfterSeconds, string Note)
{
    public static string Header =>
        "| fault | collector alive | snapshots due / stored in the window | longest gap | shortest gap | idle in transaction > 5 s | resumed after the fault | notes |\n" +
        "| --- | --- | --- | --- | --- | --- | --- | --- |";

    public string Line(double frequency) =>
        $"| {Fault} | {(Alive ? "yes" : "NO")} | {Due} / {Stored} | {Gap(LongestGapSeconds)} | {Gap(ShortestGapSeconds)}" +
        $"{(ShortestGapSeconds < frequency / 2 ? " (DOUBLE)" : "")} | {StuckInTransaction} | " +
        $"{(ResumedAfterSeconds is { } r ? $"{r:F1} s" : "not resumed")} | {Note} |";

    static string Gap(double s) => double.IsNaN(s) ? "-" : $"{s:F1} s";
}

/// <summary>
/// What the repository says of a window: the servers' snapshots (one powa_stat_bgwriter row each, with the
/// remote's time), and what a monitor sampled meanwhile (collector sessions idle in transaction for more than
/// 5 s on the repository and the remotes, where they answer).
/// </summary>
public sealed class FaultMeasure(NpgsqlConnectionStringBuilder repository, IReadOnlyList<NpgsqlConnectionStringBuilder> remotes)
{
    int _stuck;

    public async Task<NpgsqlConnection> OpenAsync(NpgsqlConnectionStringBuilder csb, string database, TimeSpan timeout)
    {
        var c = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(csb.ConnectionString)
        {
            Database = database,
            ApplicationName = "powa-cluster fault monitor",
            Timeout = Math.Max(1, (int)timeout.TotalSeconds),
            CommandTimeout = Math.Max(1, (int)timeout.TotalSeconds),
            CancellationTimeout = -1
        }.ConnectionString);
        await c.OpenAsync();
        return c;
    }

    /// <summary>Samples every 2 s until the token is cancelled; instances that do not answer (stopped, frozen) are skipped.</summary>
    public async Task SampleAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            var count = 0;
            foreach (var csb in remotes.Prepend(repository))
            {
                try
                {
                    using var t = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                    await using var c = await OpenAsync(csb, "postgres", TimeSpan.FromSeconds(2));
                    count += await SnapshotLog.StuckInTransactionAsync(c, t.Token);
                }
                catch (Exception) { /* stopped or frozen: nothing to sample there */ }
            }
            _stuck = Math.Max(_stuck, count);
            await Task.Delay(2000, ct).ContinueWith(_ => { }, CancellationToken.None); // cancelled: go on
        }
    }

    public int TakeStuck()
    {
        var s = _stuck;
        _stuck = 0;
        return s;
    }

    public async Task<Dictionary<int, List<DateTime>>> TimesAsync(DateTime fromUtc, DateTime toUtc)
    {
        await using var c = await OpenAsync(repository, repository.Database!, TimeSpan.FromSeconds(30));
        return await SnapshotLog.TimesAsync(c, fromUtc, toUtc);
    }

    /// <summary>Waits until every server has a snapshot taken after endUtc: the seconds that took, or null after the limit.</summary>
    public async Task<double?> ResumedAsync(IReadOnlyList<int> servers, DateTime endUtc, TimeSpan limit)
    {
        var deadline = LabClock.Utc + limit;
        while (LabClock.Utc < deadline)
        {
            try
            {
                var times = await TimesAsync(endUtc, LabClock.Utc.AddMinutes(1));
                if (servers.All(id => times.TryGetValue(id, out var t) && t.Count > 0))
                    return servers.Max(id => (times[id][0] - endUtc).TotalSeconds);
            }
            catch (Exception) { /* the repository is still coming back */ }
            await Task.Delay(1000);
        }
        return null;
    }

    /// <summary>Due and stored snapshots of the servers in [from, to), and the longest and shortest gap between two of a server's.</summary>
    public async Task<(int Due, int Stored, double Longest, double Shortest)> WindowAsync(IReadOnlyList<int> servers, DateTime fromUtc,
        DateTime toUtc, TimeSpan frequency)
    {
        // The gaps include the last snapshot before the window, so that a window with none still shows its gap.
        var times = await TimesAsync(fromUtc - frequency * 2, toUtc);
        var stored = 0;
        var longest = double.NaN;
        var shortest = double.NaN;
        foreach (var id in servers)
        {
            if (!times.TryGetValue(id, out var t)) continue;
            stored += t.Count(x => x >= fromUtc);
            foreach (var gap in t.Zip(t.Skip(1), (a, b) => (b - a).TotalSeconds))
            {
                longest = double.IsNaN(longest) ? gap : Math.Max(longest, gap);
                shortest = double.IsNaN(shortest) ? gap : Math.Min(shortest, gap);
            }
        }
        var due = (int)Math.Round(servers.Count * (toUtc - fromUtc).TotalSeconds / frequency.TotalSeconds);
        return (due, stored, longest, shortest);
    }
}
