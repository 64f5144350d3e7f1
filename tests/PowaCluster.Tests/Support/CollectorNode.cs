using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Hosting;
using PowaCluster.Collector.Postgres;
using PowaCluster.Host.Startup;

namespace PowaCluster.Tests.Support;

/// <summary>A one-node collector cluster in the test process, on the same host set-up as powa-cluster run.</summary>
public sealed class CollectorNode : IAsyncDisposable
{
    readonly IHost _host;
    public CollectorSettings Settings { get; }
    public CollectorRuntime Runtime { get; }
    public Akka.Actor.ActorSystem System => _host.Services.GetRequiredService<Akka.Actor.ActorSystem>();
    public IServiceProvider Services => _host.Services;

    readonly string? _ownSpool;     // a spool directory of this node's own, removed with it

    CollectorNode(IHost host, CollectorRuntime runtime, string? ownSpool)
    {
        _host = host;
        Settings = runtime.Settings;
        Runtime = runtime;
        _ownSpool = ownSpool;
    }

    public static CollectorSettings FastSettings() => new()
    {
        WriterPoolSize = 2,
        ResyncInterval = TimeSpan.FromSeconds(1),
        RetryMinDelay = TimeSpan.FromSeconds(1),
        RetryMaxDelay = TimeSpan.FromSeconds(3),
        ConnectTimeout = TimeSpan.FromSeconds(3),
        RemoteTimeout = TimeSpan.FromSeconds(20),
        RepositoryTimeout = TimeSpan.FromSeconds(30),
        NumberOfShards = 10,
    };

    /// <summary>Cluster TLS with a certificate of the fixture's throwaway CA, as a multi-node cluster needs.</summary>
    public static CollectorSettings WithTls(CollectorSettings s, Lab.Embedded.LabCertificates certs, string name)
    {
        var files = certs.Settings(name);
        s.Tls.CertificatePath = files["Tls__CertificatePath"];
        s.Tls.KeyPath = files["Tls__KeyPath"];
        s.Tls.CaPath = files["Tls__CaPath"];
        return s;
    }

    public static async Task<CollectorNode> StartAsync(TestRepository repo, CollectorSettings? settings = null,
        Action<Akka.Hosting.AkkaConfigurationBuilder>? configure = null, IReadOnlyDictionary<string, string?>? configuration = null,
        Npgsql.NpgsqlConnectionStringBuilder? repositoryDsn = null)
    {
        settings ??= FastSettings();
        // Each node its own spool (as on separate machines), unless the test gives one (to restart on it).
        string? ownSpool = null;
        if (string.IsNullOrEmpty(settings.SpoolDirectory))
            settings.SpoolDirectory = ownSpool = Directory.CreateTempSubdirectory("powa-cluster-test-spool-").FullName;
        var csb = repositoryDsn ?? repo.ConnectionString;
        settings.RepositoryDsn = csb.ConnectionString;
        var found = await RepositoryCheck.VerifyAsync(csb, settings, CancellationToken.None);
        settings.Validate();
        var runtime = new CollectorRuntime(settings, csb, found.Powa) { RepositoryIdentity = found.Identity };
        var builder = CollectorHost.CreateBuilder();
        if (configuration is not null) builder.Configuration.AddInMemoryCollection(configuration);
        var host = CollectorHost.Build(runtime, builder, minimumLevel: Microsoft.Extensions.Logging.LogLevel.Warning,
            configure: configure);
        await host.StartAsync();
        return new CollectorNode(host, runtime, ownSpool);
    }

    public async ValueTask DisposeAsync()
    {
        await _host.StopAsync(TimeSpan.FromSeconds(30));
        _host.Dispose();
        Runtime.Dispose();
        if (_ownSpool is not null)
            try { Directory.Delete(_ownSpool, recursive: true); } catch (IOException) { /* a temp directory */ }
    }
}

public static class Eventually
{
    /// <summary>Polls until the condition holds; fails with the message after the timeout.</summary>
    public static async Task HoldsAsync(Func<Task<bool>> condition, TimeSpan timeout, string what, Func<Task>? between = null)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            if (await condition()) return;
            if (DateTime.UtcNow > deadline) throw new Xunit.Sdk.XunitException($"timed out after {timeout.TotalSeconds:F0} s waiting for: {what}");
            if (between is not null) await between();
            await Task.Delay(500);
        }
    }
}
