using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Kubernetes;
using PowaCluster.Tests.Support;
using Xunit;

namespace PowaCluster.Tests.Unit;

/// <summary>Listing the collector's pods through the Kubernetes API (a stand-in on loopback, over HTTPS).</summary>
public sealed class KubernetesPodsTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("powa-cluster-sa-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    KubernetesSettings Settings(FakeKubernetesApi api, string token, string? caPem)
    {
        File.WriteAllText(Path.Combine(_dir, "token"), token + "\n");
        if (caPem is not null) File.WriteAllText(Path.Combine(_dir, "ca.crt"), caPem);
        File.WriteAllText(Path.Combine(_dir, "namespace"), "collectors");
        return new KubernetesSettings { ApiServer = $"https://127.0.0.1:{api.Port}", ServiceAccountPath = _dir };
    }

    [Fact]
    public void Only_running_pods_with_an_ip_and_the_named_port_count()
    {
        var list = JsonDocument.Parse("""
            {"items": [
              {"metadata": {"name": "a"}, "spec": {"containers": [{"ports": [{"name": "remoting", "containerPort": 4053}]}]},
               "status": {"phase": "Running", "podIP": "10.0.0.2"}},
              {"metadata": {"name": "b"}, "spec": {"containers": [{"ports": [{"name": "remoting", "containerPort": 4053}]}]},
               "status": {"phase": "Running", "podIP": "10.0.0.1"}},
              {"metadata": {"name": "deleted", "deletionTimestamp": "2026-11-26T00:00:00Z"},
               "spec": {"containers": [{"ports": [{"name": "remoting", "containerPort": 4053}]}]}, "status": {"phase": "Running", "podIP": "10.0.0.3"}},
              {"metadata": {"name": "pending"}, "spec": {"containers": [{"ports": [{"name": "remoting", "containerPort": 4053}]}]}, "status": {"phase": "Pending"}},
              {"metadata": {"name": "other-port"}, "spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8080}]}]},
               "status": {"phase": "Running", "podIP": "10.0.0.4"}},
              {"metadata": {"name": "no-ports"}, "spec": {"containers": [{"name": "sidecar"}]}, "status": {"phase": "Running", "podIP": "10.0.0.5"}}
            ]}
            """).RootElement;
        Assert.Equal(["10.0.0.1:4053", "10.0.0.2:4053"], KubernetesPods.Endpoints(list, "remoting").Select(e => e.ToString()));
        Assert.Empty(KubernetesPods.Endpoints(JsonDocument.Parse("{}").RootElement, "remoting"));
    }

    [Fact]
    public async Task Lists_the_pods_of_its_namespace_by_label_with_its_token_over_checked_TLS()
    {
        var requests = new ConcurrentQueue<(string, string?, string?)>();
        await using var api = await FakeKubernetesApi.StartAsync(requests, [4101, 4102]);
        using var pods = new KubernetesPods(Settings(api, "sa-token", api.CaPem));
        Assert.Equal(["127.0.0.1:4101", "127.0.0.1:4102"], (await pods.ListAsync(CancellationToken.None)).Select(e => e.ToString()));
        Assert.Equal(("/api/v1/namespaces/collectors/pods", "app=powa-cluster", "Bearer sa-token"), Assert.Single(requests));
    }

    [Fact]
    public async Task An_API_server_whose_certificate_the_CA_did_not_sign_is_refused()
    {
        await using var api = await FakeKubernetesApi.StartAsync(new(), [4101]);
        using var rsa = RSA.Create(2048);
        var other = new CertificateRequest("CN=127.0.0.1", rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1)
            .CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddHours(1));
        using var pods = new KubernetesPods(Settings(api, "sa-token", other.ExportCertificatePem()));
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => pods.ListAsync(CancellationToken.None));
        Assert.StartsWith($"cannot reach the Kubernetes API at https://127.0.0.1:{api.Port}/", e.Message);
    }

    [Fact]
    public async Task Forbidden_says_what_RBAC_must_allow_and_never_shows_the_token()
    {
        await using var api = await FakeKubernetesApi.StartAsync(new(), [4101]);
        using var pods = new KubernetesPods(Settings(api, "forbidden", api.CaPem));
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => pods.ListAsync(CancellationToken.None));
        Assert.Contains("403", e.Message);
        Assert.Contains("service account must be allowed to list pods", e.Message);
        Assert.Contains("namespace collectors", e.Message);
    }

    [Fact]
    public void Outside_a_pod_without_ApiServer_is_a_clear_error()
    {
        if (Environment.GetEnvironmentVariable("KUBERNETES_SERVICE_HOST") is not null) return; // running in a pod
        var e = Assert.Throws<InvalidOperationException>(() => KubernetesPods.ApiServer(new KubernetesSettings()));
        Assert.Contains("KUBERNETES_SERVICE_HOST", e.Message);
        Assert.Equal("https://10.0.0.1:443", KubernetesPods.ApiServer(new KubernetesSettings { ApiServer = "https://10.0.0.1:443" }));
    }
}
