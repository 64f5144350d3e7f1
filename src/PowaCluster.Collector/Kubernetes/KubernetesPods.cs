using System.Net.Http.Headers;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using PowaCluster.Collector.Configuration;

namespace PowaCluster.Collector.Kubernetes;

/// <summary>
/// Lists the collector's pods through the Kubernetes API, as a pod's service account allows (RBAC: list pods
/// in its namespace): GET /api/v1/namespaces/NS/pods?labelSelector=..., over HTTPS checked against the
/// service account's CA, with its token (read at each call: bound tokens rotate). Returns the IP and port of
/// every running pod on its container port named RemotingPortName. One small REST call, so it is done here
/// rather than through Akka.Discovery.KubernetesApi, which does not run with any KubernetesClient there is to
/// build with (see docs/architecture.md).
/// </summary>
public sealed class KubernetesPods : IDisposable
{
    readonly KubernetesSettings _settings;
    readonly HttpClient _http;
    readonly Uri _api;

    public KubernetesPods(KubernetesSettings settings)
    {
        _settings = settings;
        _api = new Uri(ApiServer(settings));
        var handler = new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5) };
        var caPath = Path.Combine(settings.ServiceAccountPath, "ca.crt");
        if (File.Exists(caPath))
        {
            var ca = X509CertificateLoader.LoadCertificateFromFile(caPath);
            // Only the cluster's CA, as kubectl: a certificate the machine's store trusts is not enough.
            handler.SslOptions.RemoteCertificateValidationCallback = (_, cert, _, errors) =>
            {
                if (cert is null) return false;
                if ((errors & (SslPolicyErrors.RemoteCertificateNameMismatch | SslPolicyErrors.RemoteCertificateNotAvailable)) != 0) return false;
                using var chain = new X509Chain();
                chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                chain.ChainPolicy.CustomTrustStore.Add(ca);
                chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                return chain.Build(new X509Certificate2(cert));
            };
        }
        _http = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(10) };
    }

    /// <summary>The API server: ApiServer if set, else what Kubernetes gives every pod in its environment.</summary>
    public static string ApiServer(KubernetesSettings s)
    {
        if (!string.IsNullOrWhiteSpace(s.ApiServer)) return s.ApiServer;
        var host = Environment.GetEnvironmentVariable("KUBERNETES_SERVICE_HOST");
        var port = Environment.GetEnvironmentVariable("KUBERNETES_SERVICE_PORT");
        if (string.IsNullOrWhiteSpace(host) || string.IsNullOrWhiteSpace(port))
            throw new InvalidOperationException(
                "KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT are not set: not in a Kubernetes pod? Set Kubernetes:ApiServer");
        return $"https://{(host.Contains(':') ? $"[{host}]" : host)}:{port}";
    }

    /// <summary>Kubernetes:Namespace, else the pod's own, from its service account.</summary>
    public string Namespace()
    {
        if (!string.IsNullOrWhiteSpace(_settings.Namespace)) return _settings.Namespace;
        var path = Path.Combine(_settings.ServiceAccountPath, "namespace");
        return File.Exists(path) ? File.ReadAllText(path).Trim() : "default";
    }

    public string LabelSelector => string.Format(_settings.PodLabelSelector, _settings.ServiceName);

    /// <summary>Each running pod's IP and remoting port, sorted; errors name what failed (never the token).</summary>
    public async Task<IReadOnlyList<PodEndpoint>> ListAsync(CancellationToken ct)
    {
        var ns = Namespace();
        var url = new Uri(_api, $"/api/v1/namespaces/{Uri.EscapeDataString(ns)}/pods?labelSelector={Uri.EscapeDataString(LabelSelector)}");
        using var request = new HttpRequestMessage(HttpMethod.Get, url);
        var tokenPath = Path.Combine(_settings.ServiceAccountPath, "token");
        if (File.Exists(tokenPath))
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", (await File.ReadAllTextAsync(tokenPath, ct).ConfigureAwait(false)).Trim());
        HttpResponseMessage response;
        try { response = await _http.SendAsync(request, ct).ConfigureAwait(false); }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            throw new InvalidOperationException($"cannot reach the Kubernetes API at {_api}: {e.GetBaseException().Message}");
        }
        using (response)
        {
            if (!response.IsSuccessStatusCode)
                throw new InvalidOperationException($"the Kubernetes API answered {(int)response.StatusCode} {response.ReasonPhrase} to listing the pods " +
                    $"of namespace {ns} ({(response.StatusCode == System.Net.HttpStatusCode.Forbidden ? "RBAC: the pod's service account must be allowed to list pods" : "see its message")})");
            var body = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
            await using var bodyScope = body.ConfigureAwait(false);
            using var doc = await JsonDocument.ParseAsync(body, cancellationToken: ct).ConfigureAwait(false);
            return Endpoints(doc.RootElement, _settings.RemotingPortName);
        }
    }

    /// <summary>From a PodList: running pods that are not being deleted, with an IP and the named port.</summary>
    public static IReadOnlyList<PodEndpoint> Endpoints(JsonElement podList, string portName)
    {
        var found = new List<PodEndpoint>();
        if (!podList.TryGetProperty("items", out var items) || items.ValueKind != JsonValueKind.Array) return found;
        foreach (var pod in items.EnumerateArray())
        {
            if (pod.TryGetProperty("metadata", out var meta) && meta.TryGetProperty("deletionTimestamp", out var del)
                && del.ValueKind != JsonValueKind.Null) continue;
            if (!pod.TryGetProperty("status", out var status)) continue;
            if (!status.TryGetProperty("phase", out var phase) || phase.GetString() != "Running") continue;
            if (!status.TryGetProperty("podIP", out var ip) || string.IsNullOrWhiteSpace(ip.GetString())) continue;
            if (!pod.TryGetProperty("spec", out var spec) || !spec.TryGetProperty("containers", out var containers)) continue;
            foreach (var c in containers.EnumerateArray())
            {
                if (!c.TryGetProperty("ports", out var ports)) continue;
                foreach (var p in ports.EnumerateArray())
                    if (p.TryGetProperty("name", out var name) && name.GetString() == portName && p.TryGetProperty("containerPort", out var port))
                        found.Add(new PodEndpoint(ip.GetString()!, port.GetInt32()));
            }
        }
        return found.Distinct().OrderBy(e => e.ToString(), StringComparer.Ordinal).ToList();
    }

    public void Dispose() => _http.Dispose();
}

/// <summary>A pod's IP and the number of its remoting container port.</summary>
public sealed record PodEndpoint(string Ip, int Port)
{
    public override string ToString() => $"{Ip}:{Port}";
}
