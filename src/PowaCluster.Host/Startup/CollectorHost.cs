using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Hosting;

namespace PowaCluster.Host.Startup;

/// <summary>The generic host of one collector node: logging, then the Akka.NET actor system.</summary>
public static class CollectorHost
{
    /// <param name="minimumLevel">overrides the level the settings give (tests keep the output to warnings)</param>
    /// <param name="configure">more Akka.NET set-up after the collector's (tests)</param>
    public static IHost Build(CollectorRuntime rt, HostApplicationBuilder? builder = null, LogLevel? minimumLevel = null,
        Action<AkkaConfigurationBuilder>? configure = null)
    {
        builder ??= CreateBuilder();
        // Under systemd (Type=notify, cluster-config/powa-cluster.service): READY=1 once started, STOPPING=1 on
        // SIGTERM. Elsewhere it does nothing. Before the logging: it would set systemd's console format, ours wins.
        builder.Services.AddSystemd();
        builder.Logging.ClearProviders();
        // One line per event, one timestamp, one level; plain or JSON (LogFormatter).
        builder.Logging.AddConsole(o => o.FormatterName = LogFormatter.FormatterName)
            .AddConsoleFormatter<LogFormatter, LogFormatterOptions>(o => o.Json = rt.Settings.LogFormat == "json");
        builder.Logging.SetMinimumLevel(minimumLevel ?? (rt.Settings.Debug ? LogLevel.Debug : LogLevel.Information));
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        builder.Services.AddSingleton(rt);
        builder.Services.AddSingleton(rt.Time);
        builder.Services.AddAkka(AkkaConfiguration.SystemName, (akka, _) =>
        {
            akka.WithPowaCollector(rt, minimumLevel);
            configure?.Invoke(akka);
        });
        // After Akka: CoordinatedShutdown hands off the node's shards (HandOffTimeout) and leaves the cluster
        // before the host gives up.
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = ShutdownTimeout(rt.Settings));
        builder.Services.AddPowaMetrics(rt, builder.Configuration);
        builder.Services.AddHostedService<HealthEndpoint>();
        return builder.Build();
    }

    /// <summary>
    /// How long SIGTERM may take: the hand-off of the shards (a snapshot being read gets half of HandOffTimeout),
    /// the writers' drain (HandOffTimeout, then spooling what is left: NodeActorsConfiguration.UnstoredSpoolTimeout
    /// twice), then leaving the cluster. Kubernetes' terminationGracePeriodSeconds must be longer.
    /// </summary>
    public static TimeSpan ShutdownTimeout(CollectorSettings s) => s.HandOffTimeout + TimeSpan.FromSeconds(45);

    /// <summary>appsettings.json beside the executable, then environment variables.</summary>
    public static HostApplicationBuilder CreateBuilder() => Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder(
        new HostApplicationBuilderSettings { ContentRootPath = AppContext.BaseDirectory, Args = [] });
}
