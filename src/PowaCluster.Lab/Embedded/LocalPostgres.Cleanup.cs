using System.Diagnostics;

namespace PowaCluster.Lab.Embedded;

/// <summary>
/// Nothing left behind: the instances of this process are stopped at its exit, and those of processes that
/// died without cleaning up (kill -9, a crashed test host) are stopped and deleted by the next one.
/// </summary>
public sealed partial class LocalPostgres
{
    static int _exitHookInstalled;

    /// <summary>Ctrl-C or a plain exit still stops every instance and removes its files.</summary>
    static void InstallExitHook()
    {
        if (Interlocked.Exchange(ref _exitHookInstalled, 1) == 1) return;
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            LocalPostgres[] all;
            lock (Running) all = Running.ToArray();
            foreach (var pg in all) pg.StopNow();
        };
    }

    const string DirPrefix = "powa-cluster-";
    const string OwnerFile = "owner.pid";
    static int _swept;

    /// <summary>
    /// Stops and deletes the instances of processes that died without cleaning up (kill -9, a crashed test
    /// host): each instance directory records the pid of the process that started it.
    /// </summary>
    static void SweepOrphans()
    {
        if (Interlocked.Exchange(ref _swept, 1) == 1) return;
        foreach (var dir in System.IO.Directory.EnumerateDirectories(Path.GetTempPath(), DirPrefix + "*"))
        {
            var owner = Path.Combine(dir, OwnerFile);
            if (!File.Exists(owner) || !int.TryParse(File.ReadAllText(owner).Trim(), out var pid)) continue;
            if (pid == Environment.ProcessId || IsAlive(pid)) continue;
            try
            {
                using var p = Process.Start(StartInfo(Path.Combine(BinDir, "pg_ctl"), $"-D {Path.Combine(dir, "data")} -m immediate -w -t 30 stop"));
                p?.WaitForExit(30_000);
            }
            catch (Exception) { /* not running */ }
            TryDelete(dir);
        }
    }

    /// <summary>A killed process not yet reaped by its parent is a zombie: /proc has it, but it is dead.</summary>
    static bool IsAlive(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var state = stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[0];
            return state is not ("Z" or "X");
        }
        catch (IOException) { return false; }
    }
}
