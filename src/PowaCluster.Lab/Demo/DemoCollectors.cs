using System.Diagnostics;
using Npgsql;
using PowaCluster.Lab.Embedded;

namespace PowaCluster.Lab.Demo;

/// <summary>The collector the demo measures: ours, or the reference for comparison.</summary>
interface IDemoCollector : IAsyncDisposable
{
    string Name { get; }
    int Pid { get; }
    TimeSpan CpuTime { get; }

    /// <summary>The exit code when the collector process has ended on its own, else null.</summary>
    int? ExitCode { get; }

    Task StopAsync();
}

/// <summary>
/// powa-cluster run, as a child process of the demo. The repository DSN (it holds the password) goes through
/// the environment, not the command line that every local user can read.
/// </summary>
sealed class OurCollector(Process process, string name = "powa-cluster", string? ownSpool = null) : IDemoCollector
{
    public string Name => name;
    public int Pid => process.Id;

    public TimeSpan CpuTime => ProcessCpu(process);
    public int? ExitCode => process.HasExited ? process.ExitCode : null;

    public static IDemoCollector Start(NpgsqlConnectionStringBuilder repo, int poolSize, bool debug) =>
        StartRun(repo, poolSize, debug, [], new Dictionary<string, string>(), "powa-cluster", logFile: null);

    /// <summary>
    /// powa-cluster run with more options and settings (a cluster node), named in the demo's messages; its
    /// output goes to logFile when given, else to the demo's own.
    /// </summary>
    /// <param name="buildDirectory">another build's output directory (powa-lab rollout --from); this build's by default</param>
    public static OurCollector StartRun(NpgsqlConnectionStringBuilder repo, int poolSize, bool debug,
        IReadOnlyList<string> args, IReadOnlyDictionary<string, string> env, string name, string? logFile, string? buildDirectory = null)
    {
        // powa-cluster's own build output is copied beside the lab's (a project reference).
        var dll = buildDirectory is null ? typeof(Host.Program).Assembly.Location : Path.Combine(buildDirectory, "powa-cluster.dll");
        var apphost = Path.Combine(Path.GetDirectoryName(dll)!, "powa-cluster");
        var psi = File.Exists(apphost)
            ? new ProcessStartInfo(apphost) { UseShellExecute = false }
            : new ProcessStartInfo("dotnet") { UseShellExecute = false, ArgumentList = { dll } };
        psi.ArgumentList.Add("run");
        if (debug) psi.ArgumentList.Add("--debug");
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["PowaCluster__RepositoryDsn"] = repo.ConnectionString;
        psi.Environment["PowaCluster__WriterPoolSize"] = poolSize.ToString();
        foreach (var (k, v) in env) psi.Environment[k] = v;
        // A spool of its own (each node its own, as on separate machines), removed with it, unless one is given.
        string? ownSpool = null;
        if (!env.ContainsKey("PowaCluster__SpoolDirectory"))
            psi.Environment["PowaCluster__SpoolDirectory"] = ownSpool = Directory.CreateTempSubdirectory("powa-cluster-spool-").FullName;
        psi.RedirectStandardOutput = psi.RedirectStandardError = logFile is not null;
        var p = Process.Start(psi)!;
        if (logFile is not null)
        {
            var writer = new StreamWriter(logFile) { AutoFlush = true };
            p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (writer) writer.WriteLine(e.Data); };
            p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (writer) writer.WriteLine(e.Data); };
            p.Exited += (_, _) => { lock (writer) writer.Flush(); };
            p.BeginOutputReadLine();
            p.BeginErrorReadLine();
        }
        Console.WriteLine($"demo: started {name}: powa-cluster run {string.Join(' ', args)} (pid {p.Id}" +
                          (logFile is null ? ")" : $", log {logFile})"));
        return new OurCollector(p, name, ownSpool);
    }

    /// <summary>SIGKILL: the process dies at once, as on a crash; nothing it holds is released by itself.</summary>
    public void Kill() => process.Kill();

    /// <summary>SIGSTOP: the process stops where it is (a frozen host, a long GC pause); its sockets stay open.</summary>
    public void Freeze() => Signal("STOP");

    /// <summary>SIGCONT: it goes on where it stopped.</summary>
    public void Thaw() => Signal("CONT");

    void Signal(string name)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill", $"-{name} {process.Id}") { UseShellExecute = false })!;
        kill.WaitForExit();
    }

    public Task<int?> TerminateAsync(TimeSpan timeout) => Terminate(process, timeout);

    public Task StopAsync() => Terminate(process, TimeSpan.FromSeconds(30));

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        process.Dispose();
        if (ownSpool is not null)
            try { Directory.Delete(ownSpool, recursive: true); } catch (IOException) { /* a temporary directory */ }
    }

    internal static TimeSpan ProcessCpu(Process p)
    {
        try { p.Refresh(); return p.HasExited ? TimeSpan.Zero : p.TotalProcessorTime; }
        catch (InvalidOperationException) { return TimeSpan.Zero; }
    }

    /// <summary>
    /// SIGTERM, as a service manager would, then waits for the exit; SIGKILL if it has not exited after the
    /// timeout. The exit code; null when it had to be killed.
    /// </summary>
    internal static Task<int?> Terminate(Process p, TimeSpan timeout) => ProcessStop.TerminateAsync(p, timeout);
}

public static class ProcessStop
{
    /// <summary>SIGTERM, then its exit code; after the timeout SIGKILL of its tree, and null.</summary>
    public static async Task<int?> TerminateAsync(Process p, TimeSpan timeout)
    {
        if (p.HasExited) return p.ExitCode;
        using (var kill = Process.Start("kill", $"-TERM {p.Id}")) kill?.WaitForExit();
        using var cts = new CancellationTokenSource(timeout);
        try { await p.WaitForExitAsync(cts.Token); return p.ExitCode; }
        catch (OperationCanceledException) { p.Kill(entireProcessTree: true); return null; }
    }
}

/// <summary>
/// A reference powa-collector (Python) on the same repository, for comparison: Debian's package (1.2.0), or
/// a release's source tree (1.3.1 from ../shared/vendor). Both read /etc/powa-collector.conf first, so it
/// is started with its list of locations replaced by one file of the demo's.
/// </summary>
sealed class ReferenceCollector(Process process, string dir, string name) : IDemoCollector
{
    public const string DebianModule = "/usr/lib/python3/dist-packages/powa_collector";

    /// <summary>powa-collector 1.3.1's tarball in ../shared/vendor beside the checkout (found from the lab's build output); null when absent.</summary>
    public static string? VendorTarball() => SharedVendor.File("powa-collector-1.3.1.tar.gz");

    public string Name => name;
    public int Pid => process.Id;

    public TimeSpan CpuTime => OurCollector.ProcessCpu(process);
    public int? ExitCode => process.HasExited ? process.ExitCode : null;

    /// <summary>The reference for a powa major: 1.3.1 from ../shared/vendor for PoWA 5 (Debian's 1.2.0 knows PoWA 4 only), else Debian's.</summary>
    /// <param name="option">the demo's option that asked for it, for the message when 1.3.1's tarball is not there</param>
    public static Task<IDemoCollector> StartForAsync(NpgsqlConnectionStringBuilder repo, int powa, string option) =>
        powa == 5
            ? StartFromTarballAsync(repo, VendorTarball() ?? throw new PowaCluster.Host.Startup.StartupException(
                $"{option} --powa 5 runs powa-collector 1.3.1 from ../shared/vendor, which is not there"), "powa-collector 1.3.1")
            : StartAsync(repo);

    /// <summary>Debian's powa-collector package (1.2.0).</summary>
    public static Task<IDemoCollector> StartAsync(NpgsqlConnectionStringBuilder repo)
    {
        if (!Directory.Exists(DebianModule))
            throw new PowaCluster.Host.Startup.StartupException("--reference needs Debian's powa-collector package: apt-get install powa-collector");
        return StartAsync(repo, sourceTree: null, "powa-collector 1.2.0 (Debian)");
    }

    /// <summary>powa-collector from a release tarball (its powa_collector package is imported from there).</summary>
    public static async Task<IDemoCollector> StartFromTarballAsync(NpgsqlConnectionStringBuilder repo, string tarball, string name)
    {
        var src = Directory.CreateTempSubdirectory("powa-cluster-reference-src-").FullName;
        using (var tar = Process.Start(new ProcessStartInfo("tar", ["-xzf", tarball, "-C", src, "--strip-components=1"]) { UseShellExecute = false })!)
        {
            await tar.WaitForExitAsync();
            if (tar.ExitCode != 0) throw new PowaCluster.Host.Startup.StartupException($"cannot extract {tarball}");
        }
        return await StartAsync(repo, src, name);
    }

    static async Task<IDemoCollector> StartAsync(NpgsqlConnectionStringBuilder repo, string? sourceTree, string name)
    {
        // Its config holds the repository password: a private directory, removed at the end.
        var dir = sourceTree ?? Directory.CreateTempSubdirectory("powa-cluster-reference-").FullName;
        var conf = Path.Combine(dir, "powa-collector.conf");
        var uri = $"postgresql://{Uri.EscapeDataString(repo.Username!)}:{Uri.EscapeDataString(repo.Password!)}@{repo.Host}:{repo.Port}/{repo.Database}";
        await File.WriteAllTextAsync(conf, System.Text.Json.JsonSerializer.Serialize(new { repository = new { dsn = uri }, debug = false }));
        var log = Path.Combine(Path.GetTempPath(), $"powa-collector-reference-{Environment.ProcessId}-{name.Split(' ')[1]}.log");
        var psi = new ProcessStartInfo("/usr/bin/python3") // Debian's, with Debian's python3-psycopg2
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = dir,
        };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add((sourceTree is null ? "" : $"import sys; sys.path.insert(0, '{sourceTree}'); ") +
                             $"import powa_collector.options as o; o.CONF_LOCATIONS = ['{conf}']; " +
                             "from powa_collector import PowaCollector; PowaCollector().main()");
        var p = Process.Start(psi)!;
        var writer = new StreamWriter(log) { AutoFlush = true };
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (writer) writer.WriteLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (writer) writer.WriteLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        Console.WriteLine($"demo: started {name} (pid {p.Id}), its log in {log}");
        return new ReferenceCollector(p, dir, name);
    }

    public Task StopAsync() => OurCollector.Terminate(process, TimeSpan.FromSeconds(30));

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        process.Dispose();
        try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
    }
}
