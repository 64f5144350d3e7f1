using System.Collections.Concurrent;
using Akka.Cluster;
using PowaCluster.Collector.Configuration;
using PowaCluster.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace PowaCluster.Tests.Integration;

/// <summary>
/// Kubernetes mode end to end, without Kubernetes: a stand-in for the Kubernetes API (HTTPS on loopback)
/// answers the pod list, and two nodes configured as in k8s/statefulset.yaml (Discovery = kubernetes) find
/// each other in it and form one cluster: the API's TLS certificate checked against the service account's
/// CA, its token sent, its namespace used, the pods' "remoting" ports joined.
/// </summary>
[Collection(LabCollection.Name)]
public sealed class KubernetesBootstrapTests(LabFixture fx, ITestOutputHelper output)
{
    [Fact]
    public async Task Pods_find_each_other_through_the_Kubernetes_API_and_form_one_cluster()
    {
        var repo = await fx.NewRepositoryAsync();
        var ids = new List<int>();
        for (var i = 0; i < 4; i++) ids.Add(await repo.RegisterAsync(fx.Lab.Remotes[i % 2], 45 + i / 2, $"k8s-{i}", frequency: 5));
        var remoting = ClusterTests.FreePorts(2);
        var dir = Directory.CreateTempSubdirectory("powa-cluster-k8s-").FullName;
        var requests = new ConcurrentQueue<(string Path, string? Selector, string? Authorization)>();
        await using var api = await FakeKubernetesApi.StartAsync(requests, remoting);
        // The service account's files, as Kubernetes mounts them in every pod.
        await File.WriteAllTextAsync(Path.Combine(dir, "token"), "test-service-account-token");
        await File.WriteAllTextAsync(Path.Combine(dir, "ca.crt"), api.CaPem);
        await File.WriteAllTextAsync(Path.Combine(dir, "namespace"), "powa");
        var nodes = new List<CollectorNode>();
        try
        {
            foreach (var port in remoting)
            {
                var s = CollectorNode.FastSettings();
                s.Discovery = DiscoveryModes.Kubernetes;
                s.ClusterPort = port;
                s.Kubernetes.RequiredContactPoints = 2;
                s.Kubernetes.StableMargin = TimeSpan.FromSeconds(2);
                s.Kubernetes.ApiServer = $"https://127.0.0.1:{api.Port}";
                s.Kubernetes.ServiceAccountPath = dir;
                CollectorNode.WithTls(s, fx.Certificates, $"pod-{port}");
                nodes.Add(await CollectorNode.StartAsync(repo, s));
            }
            await Eventually.HoldsAsync(() => Task.FromResult(nodes.All(n =>
                    Cluster.Get(n.System).State.Members.Count(m => m.Status == MemberStatus.Up) == 2)),
                TimeSpan.FromSeconds(60), "both nodes Up in one cluster of two");
            // The lowest address formed the cluster; the other joined it.
            var addresses = nodes.Select(n => Cluster.Get(n.System).SelfAddress).ToList();
            Assert.All(nodes, n => Assert.Equal(addresses.OrderBy(a => a.Port).ToList(),
                Cluster.Get(n.System).State.Members.Select(m => m.Address).OrderBy(a => a.Port).ToList()));
            await Eventually.HoldsAsync(() => repo.AllSnapshottedAsync(ids), TimeSpan.FromSeconds(30), "a snapshot of every registered server");
        }
        finally
        {
            foreach (var n in nodes) await n.System.Terminate();
            foreach (var n in nodes) await n.DisposeAsync();
            Directory.Delete(dir, recursive: true);
        }
        foreach (var r in requests.Take(3)) output.WriteLine($"{r.Path} labelSelector={r.Selector}");
        Assert.All(requests, r =>
        {
            Assert.Equal("/api/v1/namespaces/powa/pods", r.Path);
            Assert.Equal("app=powa-cluster", r.Selector);
            Assert.Equal("Bearer test-service-account-token", r.Authorization);
        });
    }
}
