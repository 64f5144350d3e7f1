using PowaCluster.Host.Startup;
using PowaCluster.Lab.Embedded;

namespace PowaCluster.Lab.Bench;

/// <summary>
/// bench --pin: the repository's instance alone on the first core, everything else (this process, the remotes,
/// the collectors it starts) on the others, so that the repository's limit and a collector's throughput are
/// measured on the same cores whoever reads the remotes. CPU affinity is inherited by the threads and processes
/// started afterwards, so this process is pinned first and the repository's processes are moved afterwards.
/// </summary>
static class CoreSplit
{
    public const string RepositoryCores = "0";
    static string OtherCores => Environment.ProcessorCount == 2 ? "1" : $"1-{Environment.ProcessorCount - 1}";

    public static string Describe => $"repository on core {RepositoryCores}, remotes and collectors on core(s) {OtherCores}";

    /// <summary>This process (all its threads) off the repository's core, before anything is started.</summary>
    public static Task PinThisProcessAsync()
    {
        if (Environment.ProcessorCount < 2)
            throw new StartupException($"--pin needs 2 cores or more: this machine has {Environment.ProcessorCount}");
        return TasksetAsync(Environment.ProcessId, OtherCores);
    }

    /// <summary>The repository's postmaster and its processes on their core (backends forked later inherit it).</summary>
    public static async Task PinRepositoryAsync(IPostgresInstance repository)
    {
        if (repository is not LocalPostgres pg)
            throw new StartupException("--pin needs the lab's own PostgreSQL instances (their processes are on this machine), not containers");
        var pids = pg.ProcessIds();
        if (pids.Count == 0) throw new StartupException($"--pin: no process found for the repository instance {pg.Name}");
        foreach (var pid in pids) await TasksetAsync(pid, RepositoryCores, mayBeGone: pid != pids[0]);
    }

    static async Task TasksetAsync(int pid, string cores, bool mayBeGone = false)
    {
        (bool Ok, string Output) run;
        try { run = await LabProcess.RunAsync("taskset", ["-a", "-c", "-p", cores, pid.ToString(System.Globalization.CultureInfo.InvariantCulture)]); }
        catch (System.ComponentModel.Win32Exception e) { throw new StartupException($"--pin needs taskset (util-linux): {e.Message}"); }
        if (!run.Ok && !(mayBeGone && !Directory.Exists($"/proc/{pid}")))
            throw new StartupException($"--pin: taskset could not move process {pid} to core(s) {cores}: {run.Output}");
    }
}
