using System.Net;
using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Sharding;
using Akka.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Metrics;
using PowaCluster.Collector.Actors;
using PowaCluster.Collector.Hosting;

namespace PowaCluster.Host.Startup;

/// <summary>
/// HTTP on --http-port: GET /healthz answers 200 while the process and its actor system live (a liveness
/// probe); GET /ready answers 200 when this node is an Up member of the cluster and reaches the repository,
/// 503 and why otherwise (a readiness probe); its last line gives the servers this node collects. GET
/// /metrics: the node's metrics in the Prometheus text format (MetricsExport). Nothing else is served.
/// </summary>
public sealed class HealthEndpoint(CollectorRuntime rt, ActorSystem system, ILogger<HealthEndpoint> log, IServiceProvider services) : IHostedService
{
    static readonly TimeSpan RepositoryCheckTimeout = TimeSpan.FromSeconds(3);
    IHost? _app;
    CachedAnswer<(bool Ready, string Text)>? _readiness;

    /// <summary>/ready's answer, computed at most once a second (CachedAnswer).</summary>
    CachedAnswer<(bool Ready, string Text)> Readiness => _readiness ??= new(ReadinessAsync, TimeSpan.FromSeconds(1));

    public async Task StartAsync(CancellationToken ct)
    {
        if (rt.Settings.HttpPort is not { } port) return;
        _app = await StartKestrelAsync(port, rt.Settings.HttpHost, ct);
        log.LogInformation("Serving /healthz, /ready and /metrics on {Host}:{Port}", rt.Settings.HttpHost, port);
    }

    /// <summary>In a method of its own: a node without --http-port never loads ASP.NET Core.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    async Task<IHost> StartKestrelAsync(int port, string host, CancellationToken ct)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k =>
        {
            if (host is "0.0.0.0" or "*" or "") k.ListenAnyIP(port);
            else if (IPAddress.TryParse(host, out var ip)) k.Listen(ip, port);
            else if (host == "localhost") k.ListenLocalhost(port);
            else throw new InvalidOperationException($"HttpHost must be an IP address, localhost or 0.0.0.0, not \"{host}\"");
        });
        var app = builder.Build();
        // The host's MeterProvider (MetricsExport), scraped on this port.
        if (services.GetService(typeof(MeterProvider)) is MeterProvider meters)
            app.UseOpenTelemetryPrometheusScrapingEndpoint(meters, ctx => ctx.Request.Path == "/metrics", null, null, null);
        app.MapGet("/healthz", () => system.WhenTerminated.IsCompleted
            ? Results.Text("actor system terminated\n", statusCode: StatusCodes.Status503ServiceUnavailable)
            : Results.Text("ok\n"));
        app.MapGet("/ready", async () =>
        {
            var (ready, text) = await Readiness.GetAsync();
            return Results.Text(text, statusCode: ready ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable);
        });
        try
        {
            await app.StartAsync(ct);
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
        {
            await app.DisposeAsync();
            throw new StartupException($"cannot serve /healthz, /ready and /metrics on {host}:{port}: {e.Message}");
        }
        return app;
    }

    /// <summary>
    /// Ready: an Up member, and the repository answers through this node's writer pool. The body says which of
    /// the two is missing, nothing about the repository's address or the error (the log has them).
    /// </summary>
    public async Task<(bool Ready, string Text)> ReadinessAsync()
    {
        if (system.WhenTerminated.IsCompleted) return (false, "actor system terminated\n");
        var status = Cluster.Get(system).SelfMember.Status;
        var member = status == MemberStatus.Up;
        string repository;
        var reachable = false;
        if (!ActorRegistry.For(system).TryGet<SnapshotWriterPool>(out var pool))
            repository = "not started";
        else
        {
            try
            {
                var h = await pool.Ask<RepositoryHealth>(GetRepositoryHealth.Instance, RepositoryCheckTimeout);
                reachable = h.Reachable;
                // Not the error's text: /ready answers anyone who reaches HttpHost, and the text names the
                // repository's host, database and user. The writers log it.
                repository = h.Reachable ? "reachable" : "unreachable (the node's log says why)";
            }
            catch (Exception e) when (e is AskTimeoutException or TaskCanceledException)
            {
                repository = $"no answer within {RepositoryCheckTimeout.TotalSeconds:F0} s";
            }
        }
        var ready = member && reachable;
        return (ready, $"{(ready ? "ready" : "not ready")}\nmember: {status}\nrepository: {repository}\nservers: {await ServersHeldAsync()}\n");
    }

    /// <summary>Servers collected on this node (entities of its shard region), or why it cannot say.</summary>
    async Task<string> ServersHeldAsync()
    {
        if (!ActorRegistry.For(system).TryGet<ServerCollector>(out var region)) return "not started";
        try
        {
            var state = await region.Ask<CurrentShardRegionState>(GetShardRegionState.Instance, RepositoryCheckTimeout);
            return state.Shards.Sum(s => s.EntityIds.Count).ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is AskTimeoutException or TaskCanceledException)
        {
            return $"no answer within {RepositoryCheckTimeout.TotalSeconds:F0} s";
        }
    }

    public async Task StopAsync(CancellationToken ct)
    {
        if (_app is null) return;
        await _app.StopAsync(ct);
        _app.Dispose();
    }
}
