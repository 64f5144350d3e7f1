using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using PowaCluster.Collector.Hosting;
using PowaCluster.Collector.Telemetry;

namespace PowaCluster.Host.Startup;

/// <summary>
/// Where the collector's instruments (CollectorMetrics) and the runtime's own (the System.Runtime meter: CPU,
/// memory, GC, thread pool) go: one OpenTelemetry MeterProvider, scraped at /metrics in the Prometheus text
/// format when the node serves HTTP (--http-port), and pushed over OTLP when the standard
/// OTEL_EXPORTER_OTLP_ENDPOINT is set (with OTEL_EXPORTER_OTLP_PROTOCOL, _HEADERS and OTEL_METRIC_EXPORT_INTERVAL
/// as the OpenTelemetry SDK reads them). Neither: no MeterProvider, and the instruments cost a flag test.
/// </summary>
public static class MetricsExport
{
    public const string OtlpEndpointVariable = "OTEL_EXPORTER_OTLP_ENDPOINT";

    /// <param name="config">the host's configuration (environment variables included), where the OpenTelemetry
    /// SDK reads its OTEL_* settings</param>
    public static void AddPowaMetrics(this IServiceCollection services, CollectorRuntime rt, IConfiguration config)
    {
        var prometheus = rt.Settings.HttpPort is not null;
        var otlp = !string.IsNullOrWhiteSpace(config[OtlpEndpointVariable]);
        if (!prometheus && !otlp) return;
        // A failed push is otherwise silent (the SDK's EventSource): into the node's log.
        if (otlp) services.AddHostedService<OtlpExportLog>();
        services.AddOpenTelemetry()
            // The node's cluster address names the instance (a random id when its port is chosen at start).
            .ConfigureResource(r => r.AddService("powa-cluster", serviceVersion: Collector.Hosting.CollectorVersion.Text,
                serviceInstanceId: rt.Settings.ClusterPort == 0 ? null
                    : $"{(string.IsNullOrWhiteSpace(rt.Settings.ClusterPublicHost) ? rt.Settings.ClusterHost : rt.Settings.ClusterPublicHost)}:{rt.Settings.ClusterPort}"))
            .WithMetrics(m =>
            {
                m.AddMeter(CollectorMetrics.MeterName, "System.Runtime");
                // Three gauges of the runtime end in .count, which Prometheus keeps for histograms and summaries
                // (promtool check metrics says so): the same values under names that do not.
                m.AddView("dotnet.assembly.count", "dotnet.assemblies.loaded")
                 .AddView("dotnet.process.cpu.count", "dotnet.process.cpus")
                 .AddView("dotnet.timer.count", "dotnet.timers.active");
                if (prometheus) m.AddPrometheusExporter(o => o.ScrapeResponseCacheDurationMilliseconds = 1000);
                if (otlp) m.AddOtlpExporter();
            });
    }
}
