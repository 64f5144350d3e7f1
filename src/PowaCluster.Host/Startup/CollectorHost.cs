using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using PowaCluster.Collector.Hosting;

namespace PowaCluster.Host.Startup;

/// <summary>The generic host of one collector node: logging, then the Akka.NET actor system.</summary>
public static class CollectorHost
{
    /// <param name="minimumLevel">overrides the level the settings give (tests keep the output to warnings)</param>
    public static IHost Build(CollectorRuntime rt, HostApplicationBuilder? builder = null, LogLevel? minimumLevel = null)
    {
        builder ??= CreateBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "yyyy-MM-dd HH:mm:ss.fff ";
            o.UseUtcTimestamp = true;
        });
        builder.Logging.SetMinimumLevel(minimumLevel ?? (rt.Settings.Debug ? LogLevel.Debug : LogLevel.Information));
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        builder.Services.AddSingleton(rt);
        builder.Services.AddAkka(AkkaConfiguration.SystemName, (akka, _) => akka.WithPowaCollector(rt, minimumLevel));
        return builder.Build();
    }

    /// <summary>appsettings.json beside the executable, then environment variables.</summary>
    public static HostApplicationBuilder CreateBuilder() => Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder(
        new HostApplicationBuilderSettings { ContentRootPath = AppContext.BaseDirectory, Args = [] });
}
