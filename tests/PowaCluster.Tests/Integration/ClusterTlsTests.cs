using System.Collections.Concurrent;
using System.Security.Cryptography.X509Certificates;
using Akka.Actor;
using Akka.Actor.Setup;
using Akka.Cluster;
using Akka.Configuration;
using Akka.Event;
using Akka.Remote.Transport.DotNetty;
using PowaCluster.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace PowaCluster.Tests.Integration;

/// <summary>
/// Mutual TLS between the nodes: two collector nodes with certificates of the cluster's CA form a cluster,
/// and processes that reach their remoting port without such a certificate (plain TCP; TLS with a self-signed
/// certificate; TLS with a certificate of another CA) never become members, each refusal logged in one line.
/// </summary>
[Collection(LabCollection.Name)]
public sealed class ClusterTlsTests(LabFixture fx, ITestOutputHelper output)
{
    [Fact]
    public async Task Nodes_with_the_clusters_certificates_form_a_cluster_and_strangers_are_refused()
    {
        var repo = await fx.NewRepositoryAsync();
        var id = await repo.RegisterAsync(fx.Lab.Remotes[0], 49, "tls", frequency: 5);
        var ports = ClusterTests.FreePorts(2);
        var nodes = new List<CollectorNode>();
        var strangers = new List<ActorSystem>();
        using var otherCa = Lab.Embedded.LabCertificates.Create("another CA");
        try
        {
            foreach (var port in ports)
            {
                var s = CollectorNode.WithTls(CollectorNode.FastSettings(), fx.Certificates, $"tls-node-{port}");
                s.ClusterPort = port;
                s.Seeds = [$"127.0.0.1:{ports[0]}"];
                nodes.Add(await CollectorNode.StartAsync(repo, s));
            }
            var warnings = LogCapture.Start(nodes[0].System, typeof(Warning), typeof(Error));

            Assert.Equal("akka.ssl.tcp", Cluster.Get(nodes[0].System).SelfAddress.Protocol);
            await Eventually.HoldsAsync(() => Task.FromResult(nodes.All(n =>
                Cluster.Get(n.System).State.Members.Count(m => m.Status == MemberStatus.Up) == 2)),
                TimeSpan.FromSeconds(30), "both TLS nodes Up in one cluster");
            await Eventually.HoldsAsync(async () => (await repo.SnapshotTimesAsync(id)).Count > 0,
                TimeSpan.FromSeconds(30), "a snapshot over the TLS cluster");

            var seed = $"127.0.0.1:{ports[0]}";
            var (selfCert, selfKey) = fx.Certificates.SelfSigned("stranger-self-signed");
            var (otherCert, otherKey) = otherCa.Issue("stranger-other-ca");
            strangers.Add(Stranger($"akka.tcp://powa-cluster@{seed}", null));
            strangers.Add(Stranger($"akka.ssl.tcp://powa-cluster@{seed}", X509Certificate2.CreateFromPemFile(selfCert, selfKey)));
            strangers.Add(Stranger($"akka.ssl.tcp://powa-cluster@{seed}", X509Certificate2.CreateFromPemFile(otherCert, otherKey)));

            // Long enough for several join attempts of each stranger (seed-node-timeout 5 s).
            await Task.Delay(TimeSpan.FromSeconds(15));
            foreach (var n in nodes)
                Assert.Equal(2, Cluster.Get(n.System).State.Members.Count);
            foreach (var s in strangers)
                Assert.NotEqual(MemberStatus.Up, Cluster.Get(s).SelfMember.Status);
            foreach (var w in warnings) output.WriteLine(w);
            var refusals = warnings.Where(w => w.StartsWith("Cluster TLS: refused")).ToList();
            Assert.Contains(refusals, r => r.Contains("CN=stranger-self-signed") && r.Contains("not signed by the cluster's CA"));
            Assert.Contains(refusals, r => r.Contains("CN=stranger-other-ca") && r.Contains("issued by CN=another CA"));
            // The plain-TCP stranger: Akka's own warning (TlsRefusals.Filter keeps it once a minute; ClusterTlsCheckTests).
            Assert.Contains(warnings, w => w.StartsWith("Rejected incoming connection from") && w.Contains("TLS handshake failure"));
            // One line per refused host and reason a minute, however often the strangers retry (each tried 3 times or more).
            Assert.Equal(2, refusals.Count);
            // The cluster went on collecting.
            var before = (await repo.SnapshotTimesAsync(id)).Count;
            await Eventually.HoldsAsync(async () => (await repo.SnapshotTimesAsync(id)).Count > before,
                TimeSpan.FromSeconds(15), "snapshots after the strangers' attempts");
        }
        finally
        {
            foreach (var s in strangers) await s.Terminate();
            foreach (var n in nodes) await n.DisposeAsync();
        }
    }

    /// <summary>A process that knows the cluster's address and system name, and tries to join it.</summary>
    static ActorSystem Stranger(string seed, X509Certificate2? certificate)
    {
        var config = ConfigurationFactory.ParseString($$"""
            akka.actor.provider = cluster
            akka.loglevel = ERROR
            akka.remote.dot-netty.tcp { hostname = 127.0.0.1, port = 0, enable-ssl = {{(certificate is null ? "off" : "on")}} }
            akka.cluster.seed-nodes = ["{{seed}}"]
            akka.cluster.seed-node-timeout = 2s
            """);
        var setup = BootstrapSetup.Create().WithConfig(config);
        // The stranger trusts anything; the cluster's nodes must not trust it.
        return certificate is null
            ? ActorSystem.Create("powa-cluster", setup)
            : ActorSystem.Create("powa-cluster", ActorSystemSetup.Create(setup, new DotNettySslSetup(certificate, suppressValidation: true, requireMutualAuthentication: true)));
    }
}
