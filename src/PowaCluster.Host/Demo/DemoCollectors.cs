using System.Diagnostics;
using Microsoft.Extensions.Hosting;
using Npgsql;

namespace PowaCluster.Host.Demo;

/// <summary>The collector the demo measures: ours, or the reference for comparison.</summary>
interface IDemoCollector : IAsyncDisposable
{
    string Name { get; }
    TimeSpan CpuTime { get; }
    Task StopAsync();
}

sealed class OurCollector(IHost host) : IDemoCollector
{
    public string Name => "powa-cluster";
    public TimeSpan CpuTime => Process.GetCurrentProcess().TotalProcessorTime;

    public static async Task<IDemoCollector> StartAsync(IHost host, CancellationToken ct)
    {
        await host.StartAsync(ct);
        return new OurCollector(host);
    }

    public Task StopAsync() => host.StopAsync(TimeSpan.FromSeconds(30));

    public ValueTask DisposeAsync()
    {
        host.Dispose();
        return ValueTask.CompletedTask;
    }
}

/// <summary>
/// Debian's powa-collector (Python) on the same repository, for comparison. It reads /etc/powa-collector.conf
/// first, so it is started with its list of locations replaced by one file of the demo's.
/// </summary>
sealed class ReferenceCollector(Process process, string dir) : IDemoCollector
{
    public string Name => "reference powa-collector";

    public TimeSpan CpuTime
    {
        get { try { process.Refresh(); return process.TotalProcessorTime; } catch (InvalidOperationException) { return TimeSpan.Zero; } }
    }

    public static async Task<IDemoCollector> StartAsync(NpgsqlConnectionStringBuilder repo)
    {
        const string module = "/usr/lib/python3/dist-packages/powa_collector";
        if (!Directory.Exists(module))
            throw new Startup.StartupException("--reference needs Debian's powa-collector package: apt-get install powa-collector");
        // Its config holds the repository password: a private directory, removed at the end.
        var dir = Directory.CreateTempSubdirectory("powa-cluster-reference-").FullName;
        var conf = Path.Combine(dir, "powa-collector.conf");
        var uri = $"postgresql://{Uri.EscapeDataString(repo.Username!)}:{Uri.EscapeDataString(repo.Password!)}@{repo.Host}:{repo.Port}/{repo.Database}";
        await File.WriteAllTextAsync(conf, System.Text.Json.JsonSerializer.Serialize(new { repository = new { dsn = uri }, debug = false }));
        var log = Path.Combine(Path.GetTempPath(), $"powa-collector-reference-{Environment.ProcessId}.log");
        var psi = new ProcessStartInfo("/usr/bin/python3") // Debian's, where the package installs the module
        {
            UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = dir,
        };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add($"import powa_collector.options as o; o.CONF_LOCATIONS = ['{conf}']; " +
                             "from powa_collector import PowaCollector; PowaCollector().main()");
        var p = Process.Start(psi)!;
        var writer = new StreamWriter(log) { AutoFlush = true };
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (writer) writer.WriteLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (writer) writer.WriteLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        Console.WriteLine($"demo: started the reference powa-collector (pid {p.Id}), its log in {log}");
        return new ReferenceCollector(p, dir);
    }

    public async Task StopAsync()
    {
        if (process.HasExited) return;
        Process.Start("kill", $"-TERM {process.Id}")?.WaitForExit();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try { await process.WaitForExitAsync(cts.Token); }
        catch (OperationCanceledException) { process.Kill(entireProcessTree: true); }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        process.Dispose();
        try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
    }
}
