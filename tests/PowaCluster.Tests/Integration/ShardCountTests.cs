using Akka.Actor;
using Akka.Cluster;
using PowaCluster.Collector.Actors;
using PowaCluster.Tests.Support;
using Xunit;

namespace PowaCluster.Tests.Integration;

/// <summary>
/// A node whose NumberOfShards differs from its cluster's would place servers in other shards than the others
/// do, and collect them twice: it leaves (exit code 1 for powa-cluster run) without collecting anything, and the
/// cluster goes on.
/// </summary>
[Collection(LabCollection.Name)]
public sealed class ShardCountTests(LabFixture fx)
{
    [Fact]
    public async Task A_node_with_another_NumberOfShards_leaves_without_collecting()
    {
        var repo = await fx.NewRepositoryAsync();
        var ids = new List<int>();
        for (var i = 0; i < 4; i++) ids.Add(await repo.RegisterAsync(fx.Lab.Remotes[1], 11 + i, $"shards-{i}", frequency: 5));
        var ports = ClusterTests.FreePorts(2);
        var a = CollectorNode.WithTls(CollectorNode.FastSettings(), fx.Certificates, "shards-a");
        a.ClusterPort = ports[0];
        a.Seeds = [$"127.0.0.1:{ports[0]}"];
        a.NumberOfShards = 30;
        await using var first = await CollectorNode.StartAsync(repo, a);
        await Eventually.HoldsAsync(() => repo.AllSnapshottedAsync(ids), TimeSpan.FromSeconds(30), "a first snapshot of every server");

        var b = CollectorNode.WithTls(CollectorNode.FastSettings(), fx.Certificates, "shards-b");
        b.ClusterPort = ports[1];
        b.Seeds = [$"127.0.0.1:{ports[0]}"];
        b.NumberOfShards = 20;
        await using var second = await CollectorNode.StartAsync(repo, b);
        // From its start: joining, the guard's decision, then leaving, which took over 30 s under the full suite's load.
        await Eventually.HoldsAsync(() => Task.FromResult(second.System.WhenTerminated.IsCompleted), TimeSpan.FromSeconds(60),
            "the node with another NumberOfShards left");
        Assert.IsType<ShardCountMismatchReason>(CoordinatedShutdown.Get(second.System).ShutdownReason);
        Assert.Equal(1, CoordinatedShutdown.Get(second.System).ShutdownReason!.ExitCode);
        // The cluster holds one node again, which collects every server.
        await Eventually.HoldsAsync(() => Task.FromResult(Cluster.Get(first.System).State.Members.Count(m => m.Status == MemberStatus.Up) == 1),
            TimeSpan.FromSeconds(20), "one member left");
        var since = DateTime.UtcNow;
        await Eventually.HoldsAsync(() => repo.AllSnapshottedAsync(ids, since), TimeSpan.FromSeconds(15), "snapshots of every server after it left");
    }

    [Fact]
    public async Task A_node_with_another_repository_leaves_without_collecting()
    {
        var repo = await fx.NewRepositoryAsync();
        var other = await fx.NewRepositoryAsync(); // another database: another identity
        var ids = new List<int>();
        for (var i = 0; i < 2; i++) ids.Add(await repo.RegisterAsync(fx.Lab.Remotes[1], 15 + i, $"repo-{i}", frequency: 5));
        await other.RegisterAsync(fx.Lab.Remotes[1], 17, "other-0", frequency: 5);
        var ports = ClusterTests.FreePorts(2);
        var a = CollectorNode.WithTls(CollectorNode.FastSettings(), fx.Certificates, "repo-a");
        a.ClusterPort = ports[0];
        a.Seeds = [$"127.0.0.1:{ports[0]}"];
        await using var first = await CollectorNode.StartAsync(repo, a);
        await Eventually.HoldsAsync(() => repo.AllSnapshottedAsync(ids), TimeSpan.FromSeconds(30), "a first snapshot of every server");

        var b = CollectorNode.WithTls(CollectorNode.FastSettings(), fx.Certificates, "repo-b");
        b.ClusterPort = ports[1];
        b.Seeds = [$"127.0.0.1:{ports[0]}"];
        await using var second = await CollectorNode.StartAsync(other, b);
        await Eventually.HoldsAsync(() => Task.FromResult(second.System.WhenTerminated.IsCompleted), TimeSpan.FromSeconds(60),
            "the node with another repository left");
        Assert.IsType<RepositoryMismatchReason>(CoordinatedShutdown.Get(second.System).ShutdownReason);
        Assert.Equal(1, CoordinatedShutdown.Get(second.System).ShutdownReason!.ExitCode);
        await Eventually.HoldsAsync(() => Task.FromResult(Cluster.Get(first.System).State.Members.Count(m => m.Status == MemberStatus.Up) == 1),
            TimeSpan.FromSeconds(20), "one member left");
        var since = DateTime.UtcNow;
        await Eventually.HoldsAsync(() => repo.AllSnapshottedAsync(ids, since), TimeSpan.FromSeconds(15), "snapshots of every server after it left");
    }
}
