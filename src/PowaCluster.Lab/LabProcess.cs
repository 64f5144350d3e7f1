using System.Diagnostics;

namespace PowaCluster.Lab;

/// <summary>A short tool the lab runs to its end (git, dotnet build, taskset).</summary>
static class LabProcess
{
    /// <summary>Whether it exited 0; its standard output, or on failure its output and errors.</summary>
    public static async Task<(bool Ok, string Output)> RunAsync(string file, IReadOnlyList<string> args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        return (p.ExitCode == 0, p.ExitCode == 0 ? await stdout : (await stdout + await stderr).Trim());
    }
}
