using System.Collections.Concurrent;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using PowaCluster.Lab.Embedded;
using PowaCluster.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace PowaCluster.Tests.Integration;

/// <summary>
/// A cluster certificate renewed on disk (as cert-manager renews a Secret) is used by the node's next
/// connections, without restarting the process, and collection goes on.
/// </summary>
[Collection(OutageCollection.Name)] // beside the outage tests: the main lab's collection is the suite's longest
public sealed class CertificateRenewalTests(OutageFixture fx, ITestOutputHelper output)
{
    /// <summary>The certificate the node's cluster port presents to a peer of the cluster's CA now.</summary>
    static async Task<string?> PresentedAsync(int port, X509Certificate2 client)
    {
        try
        {
            using var tcp = new TcpClient();
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await tcp.ConnectAsync("127.0.0.1", port, cts.Token);
            string? seen = null;
            await using var ssl = new SslStream(tcp.GetStream(), false, (_, cert, _, _) =>
            {
                seen = cert is null ? null : new X509Certificate2(cert).Thumbprint;
                return true;
            });
            await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = "127.0.0.1",
                ClientCertificates = [client],
            }, cts.Token);
            return seen;
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException or System.Security.Authentication.AuthenticationException)
        {
            return null; // not listening (restarting), or the handshake cut short
        }
    }

    [Fact]
    public async Task A_certificate_renewed_on_disk_is_presented_by_the_next_connections_and_collection_goes_on()
    {
        var repo = await fx.NewRepositoryAsync();
        var srvid = await repo.RegisterAsync(fx.Lab.Remotes[0], 14, "renewal", frequency: 5);
        using var certs = LabCertificates.Create();
        var env = certs.Environment("renewing-node");
        env["PowaCluster__Tls__Mode"] = "on";
        env["PowaCluster__Tls__RenewalCheckInterval"] = "00:00:01";
        var first = X509Certificate2.CreateFromPem(File.ReadAllText(env["PowaCluster__Tls__CertificatePath"])).Thumbprint;
        var (probeCert, probeKey) = certs.Issue("probe");
        using var probe = X509Certificate2.CreateFromPemFile(probeCert, probeKey);
        var port = ClusterTests.FreePorts(1)[0];
        var lines = new ConcurrentQueue<string>();
        using var node = StartupErrorTests.Start(env, ["run", "--repository", repo.ConnectionString.ConnectionString, "--cluster-port", port.ToString()]);
        node.OutputDataReceived += (_, e) => { if (e.Data is not null) lines.Enqueue(e.Data); };
        node.ErrorDataReceived += (_, e) => { if (e.Data is not null) lines.Enqueue(e.Data); };
        node.BeginOutputReadLine();
        node.BeginErrorReadLine();
        try
        {
            await Eventually.HoldsAsync(async () => (await repo.SnapshotTimesAsync(srvid)).Count >= 1, TimeSpan.FromSeconds(60), "a first snapshot");
            Assert.Equal(first, await PresentedAsync(port, probe));

            // Renewed: a new key and certificate in the same files.
            certs.Issue("renewing-node");
            var renewed = X509Certificate2.CreateFromPem(File.ReadAllText(env["PowaCluster__Tls__CertificatePath"])).Thumbprint;
            Assert.NotEqual(first, renewed);
            await Eventually.HoldsAsync(async () => await PresentedAsync(port, probe) == renewed, TimeSpan.FromSeconds(60),
                "the renewed certificate presented on the cluster port");
            Assert.False(node.HasExited, "the process goes on");
            Assert.Contains(lines, l => l.Contains("a renewed certificate is on disk"));

            var before = (await repo.SnapshotTimesAsync(srvid)).Count;
            await Eventually.HoldsAsync(async () => (await repo.SnapshotTimesAsync(srvid)).Count > before, TimeSpan.FromSeconds(60),
                "a snapshot after the restart");
            Assert.DoesNotContain(lines, l => l.Contains("in use by another powa-cluster process"));
        }
        finally
        {
            if (!node.HasExited)
            {
                using (var kill = System.Diagnostics.Process.Start("kill", ["-TERM", node.Id.ToString()])) await kill.WaitForExitAsync();
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
                try { await node.WaitForExitAsync(cts.Token); } catch (OperationCanceledException) { node.Kill(); }
            }
            foreach (var l in lines.Where(l => l.Contains("WARN") || l.Contains("ERROR") || l.Contains("renewed") || l.Contains("Cluster TLS"))) output.WriteLine(l);
        }
        Assert.Equal(0, node.ExitCode);
    }
}
