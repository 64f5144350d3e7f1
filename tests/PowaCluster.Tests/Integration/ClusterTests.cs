using Akka.Cluster;
using Akka.Hosting;
using Npgsql;
using PowaCluster.Collector.Control;
using PowaCluster.Host.Cli;
using PowaCluster.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace PowaCluster.Tests.Integration;

/// <summary>
/// Three collector nodes in this process (three ActorSystems joined with static seeds on loopback ports), on
/// a real repository: the servers spread over the three, and when one node's actor system dies without
/// leaving, the split brain resolver downs it and its servers go on on the other two.
/// </summary>
[Collection(LabCollection.Name)]
public sealed class ClusterTests(LabFixture fx, ITestOutputHelper output)
{
    internal static List<int> FreePorts(int n) => Lab.Demo.ClusterNodes.FreePorts(n);

    [Fact]
    public async Task Three_nodes_share_the_servers_and_the_servers_of_a_node_that_dies_go_on_on_the_others()
    {
        var repo = await fx.NewRepositoryAsync();
        var ids = new List<int>();
        for (var i = 0; i < 12; i++)
            ids.Add(await repo.RegisterAsync(fx.Lab.Remotes[i % 2], 31 + i / 2, $"cluster-{i}", frequency: 5));
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var ports = FreePorts(3);
        var nodes = new List<CollectorNode>();
        try
        {
            foreach (var port in ports)
            {
                var s = CollectorNode.FastSettings();
                s.ClusterPort = port;
                s.Seeds = [$"127.0.0.1:{ports[0]}", $"127.0.0.1:{ports[1]}"];
                s.StableAfter = TimeSpan.FromSeconds(3);
                s.NumberOfShards = 30;
                CollectorNode.WithTls(s, fx.Certificates, $"node-{port}");
                // Terminating the actor system must not leave the cluster gracefully: the node just goes silent.
                nodes.Add(await CollectorNode.StartAsync(repo, s,
                    a => a.AddHocon("akka.coordinated-shutdown.run-by-actor-system-terminate = off", Akka.Hosting.HoconAddMode.Prepend)));
            }
            await using var monitor = new NpgsqlConnection(repo.ConnectionString.ConnectionString);
            await monitor.OpenAsync();
            var addresses = nodes.Select(n => ControlClient.NodeName(Cluster.Get(n.System).SelfAddress.ToString())).ToList();

            Dictionary<int, (string Status, string Node, SpoolBacklog Backlog)> statuses = [];
            await Eventually.HoldsAsync(async () =>
            {
                statuses = await StatusesAsync(monitor, repo, ids);
                return statuses.Count == ids.Count && statuses.Values.All(s => s.Status == "running")
                       && addresses.All(a => statuses.Values.Any(s => s.Node == a));
            }, TimeSpan.FromSeconds(60), "12 servers running, spread over the 3 nodes");
            output.WriteLine($"{sw.Elapsed.TotalSeconds:F1} s: before: " + string.Join(", ", addresses.Select(a => $"{a} {statuses.Values.Count(s => s.Node == a)}")));

            // The oldest node dies: it hosts the FleetCoordinator and the shard coordinator too.
            var oldest = Cluster.Get(nodes[0].System).State.Members
                .Where(m => m.Status == MemberStatus.Up).OrderBy(m => m, Member.AgeOrdering).First().Address;
            var victim = nodes.Single(n => Cluster.Get(n.System).SelfAddress == oldest);
            var victimAddress = ControlClient.NodeName(oldest.ToString());
            var victimServers = statuses.Where(kv => kv.Value.Node == victimAddress).Select(kv => kv.Key).ToList();
            Assert.NotEmpty(victimServers);
            var killedAt = DateTime.UtcNow;
            await victim.System.Terminate();
            nodes.Remove(victim);
            await victim.DisposeAsync();
            output.WriteLine($"{sw.Elapsed.TotalSeconds:F1} s: node {victimAddress} terminated");

            var survivors = addresses.Where(a => a != victimAddress).ToList();
            await Eventually.HoldsAsync(async () =>
            {
                statuses = await StatusesAsync(monitor, repo, ids);
                if (statuses.Count != ids.Count || !statuses.Values.All(s => s.Status == "running" && survivors.Contains(s.Node)))
                    return false;
                foreach (var id in victimServers)
                    if (!(await repo.SnapshotTimesAsync(id)).Any(t => t.ToUniversalTime() > killedAt)) return false;
                return true;
            }, TimeSpan.FromSeconds(60), $"the {victimServers.Count} servers of the dead node snapshotted on the two others");
            output.WriteLine($"after {(DateTime.UtcNow - killedAt).TotalSeconds:F1} s: " +
                             string.Join(", ", survivors.Select(a => $"{a} {statuses.Values.Count(s => s.Node == a)}")));
            foreach (var id in ids) Assert.Empty(await repo.ErrorsAsync(id));
        }
        finally
        {
            var stopping = sw.Elapsed;
            // Graceful leaving is the multi-process test's subject; here the nodes just stop.
            foreach (var n in nodes) await n.System.Terminate();
            foreach (var n in nodes) await n.DisposeAsync();
            output.WriteLine($"stopping the nodes took {(sw.Elapsed - stopping).TotalSeconds:F1} s");
        }
    }

    static async Task<Dictionary<int, (string Status, string Node, SpoolBacklog Backlog)>> StatusesAsync(NpgsqlConnection monitor, TestRepository repo, List<int> ids)
    {
        try { return await ControlClient.ClusterStatusAsync(monitor, repo.ConnectionString, ids, TimeSpan.FromSeconds(2)); }
        catch (Host.Startup.StartupException) { return []; } // the coordinator is moving
    }
}
