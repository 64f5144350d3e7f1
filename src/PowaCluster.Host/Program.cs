using System.Runtime.InteropServices;
using Akka.Actor;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using PowaCluster.Collector.Actors;
using PowaCluster.Collector.Hosting;
using PowaCluster.Host.Cli;
using PowaCluster.Host.Demo;
using PowaCluster.Host.Startup;

namespace PowaCluster.Host;

public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        CommandLine cli;
        try
        {
            cli = CommandLine.Parse(args);
        }
        catch (UsageException e)
        {
            Console.Error.WriteLine($"powa-cluster: {e.Message}");
            Console.Error.WriteLine(CommandLine.Usage);
            return 2;
        }
        try
        {
            switch (cli.Command)
            {
                case "help": Console.WriteLine(CommandLine.Usage); return 0;
                case "version": Console.WriteLine($"powa-cluster {FleetCoordinator.Version}"); return 0;
                case "demo": return await DemoCommand.RunAsync(cli);
                case "status" or "reload" or "snapshot": return await ControlCommands.RunAsync(cli);
                default: return await RunAsync(cli);
            }
        }
        catch (StartupException e)
        {
            Console.Error.WriteLine($"powa-cluster: {e.Message}");
            return 1;
        }
    }

    /// <summary>powa-cluster run: check the repository, then collect until SIGTERM or Ctrl-C.</summary>
    static async Task<int> RunAsync(CommandLine cli)
    {
        var builder = CollectorHost.CreateBuilder();
        var (settings, repository) = SettingsLoader.Load(cli, builder.Configuration);
        var powa = await RepositoryCheck.VerifyAsync(repository, settings, CancellationToken.None);
        using var host = CollectorHost.Build(new CollectorRuntime(settings, repository, powa), builder);
        await host.StartAsync();
        var system = host.Services.GetRequiredService<ActorSystem>();
        // SIGHUP reloads, as for powa-collector: the same path as powa-web's RELOAD.
        using var hup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, ctx =>
        {
            ctx.Cancel = true;
            AkkaConfiguration.RequestReload(system);
        });
        await host.WaitForShutdownAsync();
        return 0;
    }
}
