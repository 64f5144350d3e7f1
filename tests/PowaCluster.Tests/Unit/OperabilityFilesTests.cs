using System.Diagnostics;
using PowaCluster.Collector.Configuration;
using PowaCluster.Host.Cli;
using PowaCluster.Host.Startup;
using Xunit;

namespace PowaCluster.Tests.Unit;

/// <summary>The systemd unit of cluster-config/ (systemd-analyze verify), and the command line (System.CommandLine).</summary>
public sealed class OperabilityFilesTests
{
    static readonly string Root = Support.RepoRoot.Path;

    [Fact]
    public async Task The_systemd_unit_verifies_and_fits_the_hand_off()
    {
        const string analyze = "/usr/bin/systemd-analyze";
        Assert.True(File.Exists(analyze), "systemd-analyze is installed (Debian package systemd; scripts/install-deps.sh)");
        var unit = await File.ReadAllTextAsync(Path.Combine(Root, "cluster-config", "powa-cluster.service"));
        var lines = unit.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')).ToList();
        string Value(string key) => lines.Single(l => l.StartsWith(key + "=")).Split('=', 2)[1];
        Assert.Equal("notify", Value("Type"));
        Assert.Equal("powa-cluster", Value("User"));
        Assert.Equal("on-failure", Value("Restart"));
        // A set-up that a restart will not fix is not restarted in a loop.
        Assert.Equal(StartupException.SetupExitCode.ToString(), Value("RestartPreventExitStatus"));
        Assert.Equal("/opt/powa-cluster/powa-cluster run", Value("ExecStart"));
        // systemd must never SIGKILL a node that hands off: its stop timeout exceeds the host's own.
        var stop = TimeSpan.FromSeconds(int.Parse(Value("TimeoutStopSec").TrimEnd('s')));
        Assert.True(stop > CollectorHost.ShutdownTimeout(new CollectorSettings()), $"TimeoutStopSec {stop} > the host's shutdown timeout");

        // systemd-analyze checks that ExecStart's program exists: the unit as shipped, pointed at the built one.
        var dir = Directory.CreateTempSubdirectory("powa-unit-").FullName;
        try
        {
            var file = Path.Combine(dir, "powa-cluster.service");
            await File.WriteAllTextAsync(file, unit.Replace("ExecStart=/opt/powa-cluster/powa-cluster", "ExecStart=" + Path.Combine(AppContext.BaseDirectory, "powa-cluster")));
            var (code, text) = await RunAsync(analyze, "verify", file);
            // It exits 0 even on a line it ignores: nothing printed is the verdict.
            Assert.Equal((0, ""), (code, text));
            await File.WriteAllTextAsync(file, unit.Replace("Type=notify", "Type=notifyy").Replace("ExecStart=/opt/powa-cluster/powa-cluster", "ExecStart=" + Path.Combine(AppContext.BaseDirectory, "powa-cluster")));
            Assert.Contains("Failed to parse service type", (await RunAsync(analyze, "verify", file)).Output);
        }
        finally { Directory.Delete(dir, true); }
    }

    static async Task<(int Code, string Output)> RunAsync(string program, params string[] args)
    {
        var psi = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        return (p.ExitCode, ((await o) + (await e)).Trim());
    }

    [Fact]
    public void Commands_and_options_parse_as_before()
    {
        var run = CommandLine.Parse(["run", "--repository", "host=x", "--pool-size", "4", "--cluster-host", "10.0.0.1", "--cluster-port", "4053",
            "--seed", "10.0.0.1:4053", "--seed", "10.0.0.2:4053", "--http-port", "8080", "--debug", "--log-format", "json"]);
        Assert.Equal(("run", "host=x", 4, "10.0.0.1", 4053, 8080, true, "json"),
            (run.Command, run.Repository, run.PoolSize, run.ClusterHost, run.ClusterPort, run.HttpPort, run.Debug, run.LogFormat));
        Assert.Equal(["10.0.0.1:4053", "10.0.0.2:4053"], run.Seeds);
        var status = CommandLine.Parse(["status", "--server", "7", "--timeout", "9"]);
        Assert.Equal((7, 9), (status.ServerId, status.Timeout));
        Assert.Equal(12, CommandLine.Parse(["snapshot", "12"]).ServerId);
        Assert.Equal(10, CommandLine.Parse(["check"]).Timeout);
        Assert.Equal("version", CommandLine.Parse(["--version"]).Command);
        foreach (var c in new[] { "run", "check", "status", "reload", "snapshot" })
            Assert.Equal("help", CommandLine.Parse([c, "--help"]).Command);
    }

    [Theory]
    [InlineData("run --bogus", "unknown option \"--bogus\" for run")]
    [InlineData("frob", "unknown command \"frob\"")]
    [InlineData("", "no command given")]
    [InlineData("run --pool-size 0", "--pool-size must be a whole number from 1 to 256, not \"0\"")]
    [InlineData("run --http-port x", "--http-port must be a whole number from 1 to 65535, not \"x\"")]
    [InlineData("run --seed nocolon", "--seed takes HOST:PORT, not \"nocolon\"")]
    [InlineData("run --log-format xml", "xml")]
    [InlineData("snapshot", "snapshot needs a server id (powa_servers.id)")]
    [InlineData("snapshot abc", "snapshot needs a server id (powa_servers.id)")]
    [InlineData("status --http-port 1", "unknown option \"--http-port\" for status")]
    public void Usage_errors_say_what_is_wrong(string line, string expected)
    {
        var e = Assert.Throws<UsageException>(() => CommandLine.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)));
        Assert.Contains(expected, e.Message);
    }
}
