using PowaCluster.Lab.Demo;
using PowaCluster.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace PowaCluster.Tests.Integration;

/// <summary>
/// Three powa-cluster run processes on loopback with static seeds, 30 servers on a real archivist repository:
/// SIGKILL of the oldest node, then SIGTERM of the next oldest. What happened to every server is read from
/// the repository's own tables (one powa_stat_bgwriter row per snapshot, powa_snapshot_metas.errors) and
/// from the sessions on the repository and the remotes.
/// </summary>
[Collection(LabCollection.Name)]
public sealed class FailoverTests(LabFixture fx, ITestOutputHelper output)
{
    const int Frequency = 5;
    static readonly TimeSpan StableAfter = TimeSpan.FromSeconds(5);

    [Fact]
    public async Task Three_processes_take_over_the_servers_of_a_killed_node_then_of_a_stopped_one()
    {
        var repo = await fx.NewRepositoryAsync();
        var ids = new List<int>();
        for (var i = 0; i < 30; i++)
            ids.Add(await repo.RegisterAsync(fx.Lab.Remotes[i % 2], 20 + i / 2, $"failover-{i}", frequency: Frequency));
        var logs = Directory.CreateTempSubdirectory("powa-cluster-failover-").FullName;
        var settings = new Dictionary<string, string>
        {
            ["StableAfter"] = StableAfter.ToString(),
            // Akka's own 3 s on this lightly loaded machine: at 5 s intervals the bound (StableAfter + frequency
            // + 10 s = 20 s) has no room for the default's 2 s more of failure detection (measured 19.9 s with it).
            ["HeartbeatPause"] = "00:00:03",
            ["RetryMinDelay"] = "00:00:01",
        };
        FailoverReport? report = null;
        try
        {
            await using var nodes = ClusterNodes.Start(repo.ConnectionString, 3, poolSize: 2, debug: false, settings, logs);
            await nodes.WaitReadyAsync(TimeSpan.FromSeconds(90));
            foreach (var n in nodes.Nodes)
            {
                Assert.Equal((200, "ok\n"), await ClusterNodes.GetAsync(n, "/healthz"));
                var (status, body) = await ClusterNodes.GetAsync(n);
                Assert.Equal(200, status);
                Assert.Matches("^ready\nmember: Up\nrepository: reachable\nservers: [0-9]+\n$", body);
                Assert.Equal(404, (await ClusterNodes.GetAsync(n, "/other")).Status);
            }
            using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(6));
            var scenario = new FailoverScenario(repo.ConnectionString,
                fx.Lab.Remotes.Select(r => r.ConnectionString("postgres")).ToList(), nodes, ids, Frequency, StableAfter, output.WriteLine);
            report = await scenario.RunAsync(cts.Token);
            output.WriteLine(report.Summary());
            foreach (var e in report.Errors) output.WriteLine(e);
        }
        finally
        {
            if (report is null)
                foreach (var f in Directory.GetFiles(logs))
                    output.WriteLine($"--- {f} (end)\n{string.Join('\n', File.ReadLines(f).TakeLast(40))}");
            Directory.Delete(logs, recursive: true);
        }

        Assert.Equal(3, report.ServersPerNode.Count);
        Assert.All(report.ServersPerNode.Values, n => Assert.InRange(n, 1, 30));
        Assert.Equal(ids.Count, report.ServersPerNode.Values.Sum());
        Assert.True(report.KilledServers > 0);
        Assert.Equal(report.KilledServers, report.TakenOver);
        Assert.True(report.MaxTakeover <= report.TakeoverBound, $"takeover {report.MaxTakeover} > {report.TakeoverBound}");
        Assert.Equal(0, report.TerminatedExitCode);
        Assert.True(report.MaxGapAfterSigterm <= report.GapBound, $"gap {report.MaxGapAfterSigterm} > {report.GapBound}: {report.MaxGapWhere}");
        // Never two snapshots of one server at once (two nodes collecting it): no gap much shorter than the interval.
        Assert.True(report.MinGap >= TimeSpan.FromSeconds(Frequency / 2.0), $"two snapshots {report.MinGap} apart");
        Assert.Empty(report.Errors);
        Assert.Equal(0, report.StuckInTransaction);
        Assert.Equal(ids.Count, Assert.Single(report.ServersPerNodeAtEnd).Value);
    }
}
