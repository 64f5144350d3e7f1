using System.Diagnostics;
using PowaCluster.Tests.Support;
using Xunit;

namespace PowaCluster.Tests.Integration;

/// <summary>powa-cluster run as a real process: bad start-up input gives one clear line and a non-zero exit.</summary>
[Collection(LabCollection.Name)]
public sealed class StartupErrorTests(LabFixture fx)
{
    internal static Task<(int Code, string Stdout, string Stderr)> RunAsync(params string[] args) => RunAsync(new Dictionary<string, string>(), args);

    /// <summary>
    /// powa-cluster as a process of its own, its output redirected, with no powa-collector file to find: its working
    /// directory and HOME are an empty directory of its own (deleted when it exits), so that processes started by
    /// tests running at the same time share no default path (the spool's, for one).
    /// </summary>
    internal static Process Start(IReadOnlyDictionary<string, string> env, IEnumerable<string> args)
    {
        var home = Directory.CreateTempSubdirectory("powa-cluster-test-home-").FullName;
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = home, // no ./powa-collector.conf there
        };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "powa-cluster.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["HOME"] = home; // no ~/.powa-collector.conf either
        foreach (var (k, v) in env) psi.Environment[k] = v;
        var p = Process.Start(psi)!;
        p.EnableRaisingEvents = true;
        p.Exited += (_, _) =>
        {
            try { Directory.Delete(home, recursive: true); } catch (IOException) { /* left in the temp directory */ }
        };
        return p;
    }

    internal static async Task<(int Code, string Stdout, string Stderr)> RunAsync(IReadOnlyDictionary<string, string> env, params string[] args)
    {
        using var p = Start(env, args);
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await p.WaitForExitAsync(cts.Token);
        return (p.ExitCode, await stdout, await stderr);
    }

    static void AssertOneLine(string stderr, string expected)
    {
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("powa-cluster: ", lines[0]);
        Assert.Contains(expected, lines[0]);
    }

    [Fact]
    public async Task Unreachable_repository()
    {
        var (code, _, err) = await RunAsync("run", "--repository", "postgresql://powa:Sekr3t-Word@127.0.0.1:1/powa");
        Assert.Equal(1, code);
        AssertOneLine(err, "cannot connect to the repository 127.0.0.1:1/powa user=powa");
        Assert.DoesNotContain("Sekr3t-Word", err);
    }

    [Fact]
    public async Task Repository_without_powa()
    {
        var repo = fx.Lab.Repository;
        var (code, _, err) = await RunAsync("run", "--repository",
            $"host=127.0.0.1 port={repo.Port} dbname=postgres user=postgres password={repo.Password}");
        Assert.Equal(1, code);
        AssertOneLine(err, $"the powa extension is not installed in the repository database 127.0.0.1:{repo.Port}/postgres");
        Assert.DoesNotContain(repo.Password, err);
    }

    [Fact]
    public async Task Invalid_config_file_and_no_config_at_all()
    {
        var file = Path.Combine(Path.GetTempPath(), $"powa-cluster-test-{Guid.NewGuid():N}.conf");
        await File.WriteAllTextAsync(file, "{\"repository\": {\"dns\": \"oops\"}}");
        try
        {
            var (code, _, err) = await RunAsync("run", "--config", file);
            Assert.Equal(1, code);
            AssertOneLine(err, $"configuration file {file} is invalid: it must contain a repository.dsn string");
        }
        finally { File.Delete(file); }

        // Only when no reference file exists on this machine in /etc.
        if (!File.Exists("/etc/powa-collector.conf"))
        {
            var (code2, _, err2) = await RunAsync("run");
            Assert.Equal(1, code2);
            AssertOneLine(err2, "no repository DSN");
        }
    }

    [Fact]
    public async Task Missing_cluster_TLS_files_or_a_certificate_of_another_CA()
    {
        var files = fx.Certificates.Settings("startup-node");
        var repo = fx.Lab.Repository;
        var dsn = $"host=127.0.0.1 port={repo.Port} dbname=postgres user=postgres password={repo.Password}";
        // Several nodes without the files: what to set.
        var (code, _, err) = await RunAsync("run", "--repository", dsn, "--seed", "127.0.0.1:4053");
        Assert.Equal(1, code);
        AssertOneLine(err, "mutual TLS: set Tls:CertificatePath, Tls:KeyPath, Tls:CaPath");
        // One node on every interface without the files: refused as well, before anything listens.
        (code, _, err) = await RunAsync("run", "--repository", dsn, "--cluster-host", "0.0.0.0", "--cluster-port", "0");
        Assert.Equal(1, code);
        AssertOneLine(err, "ClusterHost 0.0.0.0 is not a loopback address, where the cluster port authenticates nodes with mutual TLS: set Tls:CertificatePath");
        // A key file that is not there: named, before anything connects.
        var env = new Dictionary<string, string>
        {
            ["PowaCluster__Tls__CertificatePath"] = files["Tls__CertificatePath"],
            ["PowaCluster__Tls__KeyPath"] = "/nonexistent/node.key",
            ["PowaCluster__Tls__CaPath"] = files["Tls__CaPath"],
        };
        (code, _, err) = await RunAsync(env, "run", "--repository", dsn, "--seed", "127.0.0.1:4053");
        Assert.Equal(1, code);
        AssertOneLine(err, "cluster TLS: cannot read the node's certificate");
        Assert.Contains("/nonexistent/node.key", err);
        // Its own certificate not signed by the CA it trusts.
        using var other = Lab.Embedded.LabCertificates.Create("other CA");
        env["PowaCluster__Tls__KeyPath"] = files["Tls__KeyPath"];
        env["PowaCluster__Tls__CaPath"] = other.CaPath;
        (code, _, err) = await RunAsync(env, "run", "--repository", dsn, "--seed", "127.0.0.1:4053");
        Assert.Equal(1, code);
        AssertOneLine(err, "the node's own certificate");
        Assert.DoesNotContain(repo.Password, err);
    }

    [Fact]
    public async Task Usage_errors_exit_2()
    {
        var (code, _, err) = await RunAsync("run", "--bogus");
        Assert.Equal(2, code);
        Assert.Contains("powa-cluster: unknown option \"--bogus\" for run", err);
    }

    [Fact]
    public async Task Help_for_each_command_exits_0()
    {
        foreach (var (command, option) in new[] { ("run", "--http-port"), ("check", "--timeout"), ("status", "--server"), ("reload", "--repository"), ("snapshot", "<ID>") })
        {
            var (code, stdout, stderr) = await RunAsync(command, "--help");
            Assert.Equal((0, ""), (code, stderr.Trim()));
            Assert.Contains($"powa-cluster {command}", stdout);
            Assert.Contains(option, stdout);
        }
        var (c, o, _) = await RunAsync("--help");
        Assert.Equal(0, c);
        Assert.All(new[] { "run", "check", "status", "reload", "snapshot" }, cmd => Assert.Contains(cmd, o));
        var (c2, _, e2) = await RunAsync("run", "--bogus");
        Assert.Equal(2, c2);
        Assert.Contains("powa-cluster COMMAND --help", e2);
    }
}
