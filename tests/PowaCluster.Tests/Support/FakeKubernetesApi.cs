using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace PowaCluster.Tests.Support;

/// <summary>The one call the collector makes: list the pods of a namespace by label, over HTTPS.</summary>
public sealed class FakeKubernetesApi : IAsyncDisposable
{
    readonly WebApplication _app;
    public int Port { get; }
    /// <summary>Its certificate, self-signed for 127.0.0.1: the CA a pod would trust.</summary>
    public string CaPem { get; }

    FakeKubernetesApi(WebApplication app, int port, string caPem) { _app = app; Port = port; CaPem = caPem; }

    public static async Task<FakeKubernetesApi> StartAsync(ConcurrentQueue<(string, string?, string?)> requests,
        IReadOnlyList<int> remotingPorts)
    {
        using var rsa = RSA.Create(2048);
        var req = new CertificateRequest("CN=127.0.0.1", rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback);
        req.CertificateExtensions.Add(san.Build());
        using var ephemeral = req.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddHours(1));
        var cert = X509CertificateLoader.LoadPkcs12(ephemeral.Export(X509ContentType.Pfx), null);

        var b = WebApplication.CreateSlimBuilder();
        b.Logging.ClearProviders();
        b.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0, l => l.UseHttps(cert)));
        var app = b.Build();
        app.MapGet("/api/v1/namespaces/{ns}/pods", (HttpContext ctx, string ns) =>
        {
            requests.Enqueue((ctx.Request.Path, ctx.Request.Query["labelSelector"], ctx.Request.Headers.Authorization));
            if (ctx.Request.Headers.Authorization == "Bearer forbidden")
                return Results.Text("""{"kind": "Status", "reason": "Forbidden"}""", "application/json", statusCode: 403);
            // Two pods on one host: the same IP, each its own remoting port; a third one not running yet.
            var items = remotingPorts.Select((port, i) => $$$"""
                  {"metadata": {"name": "powa-cluster-{{{i}}}", "namespace": "{{{ns}}}", "labels": {"app": "powa-cluster"}},
                   "spec": {"containers": [{"name": "powa-cluster", "ports": [
                     {"name": "remoting", "containerPort": {{{port}}}}, {"name": "http", "containerPort": 8080}]}]},
                   "status": {"phase": "Running", "podIP": "127.0.0.1"}}
                """).Append("""
                  {"metadata": {"name": "powa-cluster-2"},
                   "spec": {"containers": [{"name": "powa-cluster", "ports": [{"name": "remoting", "containerPort": 4053}]}]},
                   "status": {"phase": "Pending"}}
                """);
            var pods = $$"""{"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [{{string.Join(",", items)}}]}""";
            return Results.Text(pods, "application/json");
        });
        await app.StartAsync();
        var port = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()).Port;
        return new FakeKubernetesApi(app, port, ephemeral.ExportCertificatePem());
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
