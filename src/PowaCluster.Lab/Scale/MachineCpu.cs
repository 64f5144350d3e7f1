using System.Globalization;

namespace PowaCluster.Lab.Scale;

/// <summary>
/// Where the machine's CPU goes, from /proc: per group of processes (a postmaster with its backends, the nodes),
/// the CPU seconds used so far, counting a postmaster's exited children (reaped into its cutime/cstime), and
/// the whole machine's busy seconds from /proc/stat. Two readings give the split over a window.
/// </summary>
public static class MachineCpu
{
    static readonly double Tick = 100.0; // USER_HZ on Linux

    public sealed record Reading(DateTime AtUtc, double MachineBusy, IReadOnlyDictionary<string, double> Groups);

    /// <param name="postmasters">group name -> postmaster pids (their children count with them)</param>
    /// <param name="processes">group name -> pids counted alone (the nodes)</param>
    public static Reading Read(IReadOnlyDictionary<string, IReadOnlyList<int>> postmasters, IReadOnlyDictionary<string, IReadOnlyList<int>> processes)
    {
        var stats = new Dictionary<int, (int PPid, double Own, double Reaped)>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
            try
            {
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                var f = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                // after the command: state ppid ... utime(11) stime(12) cutime(13) cstime(14), 0-based from state
                stats[pid] = (int.Parse(f[1], CultureInfo.InvariantCulture),
                    (double.Parse(f[11], CultureInfo.InvariantCulture) + double.Parse(f[12], CultureInfo.InvariantCulture)) / Tick,
                    (double.Parse(f[13], CultureInfo.InvariantCulture) + double.Parse(f[14], CultureInfo.InvariantCulture)) / Tick);
            }
            catch (Exception e) when (e is IOException or FormatException or IndexOutOfRangeException) { }
        }
        var groups = new Dictionary<string, double>();
        foreach (var (name, pms) in postmasters)
        {
            var set = pms.ToHashSet();
            groups[name] = stats.Where(kv => set.Contains(kv.Key)).Sum(kv => kv.Value.Own + kv.Value.Reaped)
                           + stats.Where(kv => set.Contains(kv.Value.PPid)).Sum(kv => kv.Value.Own);
        }
        foreach (var (name, pids) in processes)
            groups[name] = pids.Where(stats.ContainsKey).Sum(p => stats[p].Own + stats[p].Reaped);
        return new Reading(LabClock.Utc, MachineBusySeconds(), groups);
    }

    static double MachineBusySeconds()
    {
        var cpu = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1)
            .Select(x => double.Parse(x, CultureInfo.InvariantCulture)).ToArray();
        // user nice system idle iowait irq softirq steal
        return (cpu[0] + cpu[1] + cpu[2] + cpu[5] + cpu[6] + cpu[7]) / Tick;
    }

    /// <summary>Cores used on average between two readings, per group, the rest of the machine and in all.</summary>
    public static string Split(Reading a, Reading b)
    {
        var wall = (b.AtUtc - a.AtUtc).TotalSeconds;
        if (wall <= 0) return "";
        var parts = b.Groups.Select(kv => (kv.Key, Cores: (kv.Value - a.Groups.GetValueOrDefault(kv.Key)) / wall)).ToList();
        var machine = (b.MachineBusy - a.MachineBusy) / wall;
        var rest = machine - parts.Sum(p => p.Cores);
        return $"machine CPU over {wall:F0} s: {machine:F2} cores busy of {Environment.ProcessorCount} (" +
               string.Join(", ", parts.Select(p => $"{p.Key} {p.Cores:F2}")) + $", everything else {rest:F2})";
    }
}
