using System.Runtime.InteropServices;
using Akka.Actor;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using PowaCluster.Collector.Actors;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Hosting;
using PowaCluster.Collector.Security;
using PowaCluster.Host.Cli;
using PowaCluster.Host.Startup;

namespace PowaCluster.Host;

public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        UseInlineSocketCompletions();
        CommandLine cli;
        try
        {
            cli = CommandLine.Parse(args);
        }
        catch (UsageException e)
        {
            Console.Error.WriteLine($"powa-cluster: {e.Message}");
            Console.Error.WriteLine($"powa-cluster: {CommandLine.Hint}");
            return 2;
        }
        try
        {
            switch (cli.Command)
            {
                case "help": return cli.Help!.Invoke();
                case "version": Console.WriteLine($"powa-cluster {CollectorVersion.Text}"); return 0;
                case "status" or "reload" or "snapshot": return await ControlCommands.RunAsync(cli);
                case "check": return await CheckCommand.RunAsync(cli);
                default: return await RunAsync(cli);
            }
        }
        catch (StartupException e)
        {
            Console.Error.WriteLine($"powa-cluster: {e.Message}");
            return e.ExitCode;
        }
    }

    /// <summary>
    /// A snapshot is a few dozen round trips to PostgreSQL, and on a busy or virtualised host the cost of each
    /// is the hand-over from the socket engine's thread to a thread-pool thread, not the bytes. Running the
    /// continuation on the thread that saw the data saves that hop: measured with powa-lab bench, 7.1 ->
    /// 4.6 ms of CPU per snapshot. Nothing here blocks after an await on a socket. Read by the runtime when
    /// the first socket is made, so set before anything else; an operator's own setting wins.
    /// </summary>
    static void UseInlineSocketCompletions()
    {
        const string name = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";
        if (Environment.GetEnvironmentVariable(name) is null) Environment.SetEnvironmentVariable(name, "1");
    }

    /// <summary>
    /// powa-cluster run: check the repository, then collect until SIGTERM or Ctrl-C. The actor system starts
    /// again in the process when a renewed cluster certificate is on disk (CertificateRenewal), with the same
    /// settings.
    /// </summary>
    static async Task<int> RunAsync(CommandLine cli)
    {
        var builder = CollectorHost.CreateBuilder();
        var (settings, repository) = SettingsLoader.Load(cli, builder.Configuration);
        RepositoryEnvironment.Confine(repository); // PGPASSWORD & co. are the repository's, never a remote's
        // The cluster's TLS files before anything connects: a missing or wrong file is one line, exit code 1.
        try { _ = ClusterTls.Load(settings); }
        catch (ArgumentException e) { throw new StartupException(e.Message); }
        var found = await RepositoryCheck.VerifyOrSavedAsync(repository, settings, m => Console.Error.WriteLine("powa-cluster: " + m),
            CancellationToken.None);
        while (true)
        {
            var (code, renewed) = await RunSystemAsync(settings, repository, found, builder);
            if (!renewed) return code;
            builder = CollectorHost.CreateBuilder(); // a builder builds one host
        }
    }

    /// <summary>One actor system, until a signal or the cluster stops it (an exit code), or a renewed certificate (Renewed).</summary>
    static async Task<(int Code, bool Renewed)> RunSystemAsync(CollectorSettings settings, Npgsql.NpgsqlConnectionStringBuilder repository,
        RepositoryFound found, HostApplicationBuilder builder)
    {
        CollectorRuntime runtime;
        try { runtime = new CollectorRuntime(settings, repository, found.Powa) { RepositoryIdentity = found.Identity }; }
        catch (ArgumentException e) { throw new StartupException(e.Message); }
        using var ownRuntime = runtime; // its spool lock goes before the next system's runtime takes it
        using var host = CollectorHost.Build(runtime, builder);
        try
        {
            await host.StartAsync();
        }
        catch (Exception e)
        {
            var cause = e is AggregateException { InnerExceptions.Count: > 0 } a ? a.InnerExceptions[0] : e;
            try { await host.StopAsync(CollectorHost.ShutdownTimeout(settings)); } catch (Exception) { /* already failing */ }
            throw cause as StartupException ?? new StartupException($"cannot start: {cause.Message}");
        }
        var system = host.Services.GetRequiredService<ActorSystem>();
        // SIGHUP reloads, as for powa-collector: the same path as powa-web's RELOAD.
        using var hup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, ctx =>
        {
            ctx.Cancel = true;
            ShardingConfiguration.RequestReload(system);
        });
        using var stopped = new CancellationTokenSource();
        var lifetime = host.Services.GetRequiredService<IHostApplicationLifetime>();
        var renewal = CertificateRenewal.WatchAsync(runtime, system, stopped.Token);
        _ = renewal.ContinueWith(t => { if (t.Result) lifetime.StopApplication(); }, TaskContinuationOptions.OnlyOnRanToCompletion);
        await host.WaitForShutdownAsync();
        await stopped.CancelAsync();
        if (await renewal) return (0, true);
        // Stopped by a signal: 0. Downed by the cluster (split brain resolver, or the node was unreachable
        // too long): 1, so that a service manager or Kubernetes sees a failure and starts it again.
        switch (CoordinatedShutdown.Get(system).ShutdownReason)
        {
            case CoordinatedShutdown.ClusterDowningReason:
                Console.Error.WriteLine("powa-cluster: this node was downed by the cluster (unreachable from the majority); " +
                                        "its servers are collected by the other nodes. Exiting: start it again to rejoin.");
                return (1, false);
            case ShardCountMismatchReason:
                Console.Error.WriteLine("powa-cluster: this node's NumberOfShards differs from its cluster's (its log says which): " +
                                        "it left the cluster without collecting. Set the cluster's value and start it again.");
                return (1, false);
            case RepositoryMismatchReason:
                Console.Error.WriteLine("powa-cluster: this node's repository is not its cluster's (its log says which): " +
                                        "it left the cluster without collecting. Give it the cluster's repository DSN and start it again.");
                return (1, false);
            case JoinFailedReason:
                Console.Error.WriteLine("powa-cluster: could not join the cluster in time (its log says why). Exiting: start it again.");
                return (1, false);
        }
        return (0, false);
    }
}
