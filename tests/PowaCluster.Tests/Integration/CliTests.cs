using PowaCluster.Tests.Support;
using Xunit;

namespace PowaCluster.Tests.Integration;

/// <summary>powa-cluster status / reload / snapshot as real processes, talking to a running node through the repository.</summary>
[Collection(LabCollection.Name)]
public sealed class CliTests(LabFixture fx)
{
    [Fact]
    public async Task Status_reload_and_snapshot_against_a_running_node()
    {
        var repo = await fx.NewRepositoryAsync();
        var remote = fx.Lab.Remotes[1];
        var srvid = await repo.RegisterAsync(remote, 30, "cli-one", frequency: 300);
        await repo.ExecAsync("UPDATE powa_snapshot_metas SET snapts = now() - interval '250 s' WHERE srvid = $1", srvid);
        var dsn = repo.ConnectionString.ConnectionString;
        await using var node = await CollectorNode.StartAsync(repo);
        await using (var web = await PowaWebClient.ConnectAsync(repo.ConnectionString))
            await web.WaitForCollectorAsync();

        var deadline = DateTime.UtcNow.AddSeconds(15);
        (int Code, string Stdout, string Stderr) status;
        do status = await StartupErrorTests.RunAsync("status", "--repository", dsn);
        while (!status.Stdout.Contains("running") && DateTime.UtcNow < deadline);
        Assert.Equal(0, status.Code);
        var line = status.Stdout.Split('\n').Single(l => l.Contains("cli-one"));
        Assert.Contains($"127.0.0.30:{remote.Port}", line);
        Assert.Matches(@"\s127\.0\.0\.1:\d+\s", line); // the node
        Assert.Contains("running", line);
        Assert.DoesNotContain(remote.Password, status.Stdout + status.Stderr);

        var reload = await StartupErrorTests.RunAsync("reload", "--repository", dsn);
        Assert.Equal((0, "reload done"), (reload.Code, reload.Stdout.Trim()));

        var snap = await StartupErrorTests.RunAsync("snapshot", srvid.ToString(), "--repository", dsn);
        Assert.Equal((0, $"server {srvid}: Snapshot in progress"), (snap.Code, snap.Stdout.Trim()));
        var again = await StartupErrorTests.RunAsync("snapshot", srvid.ToString(), "--repository", dsn);
        Assert.Equal(1, again.Code);
        var unknown = await StartupErrorTests.RunAsync("snapshot", "9999", "--repository", dsn);
        Assert.Equal((1, "server 9999: Server id 9999 not found"), (unknown.Code, unknown.Stdout.Trim()));
        await Eventually.HoldsAsync(async () => (await repo.SnapshotTimesAsync(srvid)).Count == 1, TimeSpan.FromSeconds(10), "the forced snapshot");

        var one = await StartupErrorTests.RunAsync("status", "--server", srvid.ToString(), "--repository", dsn);
        Assert.Equal(0, one.Code);
        // The day of the snapshot stored, not of the test's clock (a run around midnight).
        var taken = Assert.Single(await repo.SnapshotTimesAsync(srvid)).ToUniversalTime();
        Assert.Contains(taken.ToString("yyyy-MM-dd"), one.Stdout.Split('\n').Single(l => l.Contains("cli-one")));
    }

    [Fact]
    public async Task No_collector_running_is_a_clear_error()
    {
        var repo = await fx.NewRepositoryAsync();
        await repo.RegisterAsync(fx.Lab.Remotes[0], 31, "cli-none");
        var (code, _, err) = await StartupErrorTests.RunAsync("status", "--repository", repo.ConnectionString.ConnectionString, "--timeout", "2");
        Assert.Equal(1, code);
        Assert.Contains("powa-cluster: no collector answered CLUSTER_STATUS within 2 s", err);
        var (code2, _, err2) = await StartupErrorTests.RunAsync("snapshot", "--repository", "host=x");
        Assert.Equal(2, code2);
        Assert.Contains("snapshot needs a server id", err2);
    }
}
