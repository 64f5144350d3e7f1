using Akka.Actor;
using Akka.Cluster.Hosting;
using Akka.Cluster.Sharding;
using Akka.Hosting;
using Akka.Remote.Hosting;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using PowaCluster.Collector.Hosting;

namespace PowaCluster.Lab.Bench;

/// <summary>
/// The stack's floor, for the bench's idle rows: a node of the same stack as powa-cluster (the generic host,
/// Akka.Hosting, Akka.Remote, Akka.Cluster, one shard region, the same scheduler tick, Npgsql loaded) with no
/// actor of ours, started as a process of its own by <c>powa-lab stack-node</c>. It runs with the lab's
/// runtime settings, which are the host's (src/RuntimeSettings.props).
/// </summary>
public static class StackNode
{
    public static async Task<int> RunAsync()
    {
        var port = Embedded.LocalPostgres.FreePort();
        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [] });
        builder.Logging.ClearProviders().AddConsole();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Services.AddAkka(AkkaConfiguration.SystemName, (akka, _) => akka
            .WithPowaScheduler()
            .WithRemoting(new RemoteOptions { HostName = "127.0.0.1", Port = port })
            .WithClustering(new ClusterOptions { SeedNodes = [$"akka.tcp://{AkkaConfiguration.SystemName}@127.0.0.1:{port}"] })
            .WithShardRegion<Idle>("idle", _ => Props.Create<Idle>(), new Extractor(), new ShardOptions()));
        // Loaded, as the collector loads it; no connection is opened.
        _ = typeof(Npgsql.NpgsqlConnection).Assembly;
        using var host = builder.Build();
        await host.RunAsync();
        return 0;
    }

    sealed class Idle : ReceiveActor
    {
        public Idle() => ReceiveAny(_ => { });
    }

    sealed class Extractor : HashCodeMessageExtractor
    {
        public Extractor() : base(10) { }
        public override string EntityId(object message) => message.ToString() ?? "";
    }
}

/// <summary><c>powa-lab stack-node</c> as a child process of the bench, measured as a collector is.</summary>
sealed class StackNodeProcess(System.Diagnostics.Process process) : Demo.IDemoCollector
{
    public string Name => "stack floor (host, Akka.Cluster, one shard region; no actor of ours)";
    public int Pid => process.Id;
    public TimeSpan CpuTime => Demo.OurCollector.ProcessCpu(process);
    public int? ExitCode => process.HasExited ? process.ExitCode : null;

    public static Task<Demo.IDemoCollector> StartAsync()
    {
        var psi = new System.Diagnostics.ProcessStartInfo("dotnet") { UseShellExecute = false };
        psi.ArgumentList.Add(typeof(StackNode).Assembly.Location);
        psi.ArgumentList.Add("stack-node");
        return Task.FromResult<Demo.IDemoCollector>(new StackNodeProcess(System.Diagnostics.Process.Start(psi)!));
    }

    public Task StopAsync() => Demo.ProcessStop.TerminateAsync(process, TimeSpan.FromSeconds(30));

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        process.Dispose();
    }
}
