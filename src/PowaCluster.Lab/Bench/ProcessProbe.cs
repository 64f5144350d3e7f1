using System.Diagnostics;

namespace PowaCluster.Lab.Bench;

/// <summary>What a process uses, read from /proc: CPU time, resident memory, threads.</summary>
public static class ProcessProbe
{
    /// <summary>CPU time used so far, in all and of it in the kernel (system calls, the socket stack, scheduling).</summary>
    public static (TimeSpan Total, TimeSpan Kernel) Cpu(int pid)
    {
        try
        {
            using var p = Process.GetProcessById(pid);
            return (p.TotalProcessorTime, p.PrivilegedProcessorTime);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException) { return (TimeSpan.Zero, TimeSpan.Zero); }
    }

    /// <summary>VmRSS in bytes and Threads, from /proc/PID/status; zeros when the process is gone.</summary>
    public static (long RssBytes, int Threads) Memory(int pid)
    {
        long rss = 0;
        var threads = 0;
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith("VmRSS:")) rss = long.Parse(line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
                else if (line.StartsWith("Threads:")) threads = int.Parse(line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)[1]);
            }
        }
        catch (IOException) { }
        return (rss, threads);
    }
}
