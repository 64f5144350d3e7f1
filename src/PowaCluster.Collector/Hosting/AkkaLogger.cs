using Akka.Actor;
using Akka.Dispatch;
using Akka.Event;
using Akka.Hosting.Logging;
using Microsoft.Extensions.Logging;

namespace PowaCluster.Collector.Hosting;

/// <summary>
/// Akka's log events into Microsoft.Extensions.Logging, like Akka.Hosting's LoggerFactoryLogger, with two
/// differences: the actor system's log filters apply (Akka.Hosting's logger ignores them; ClusterTls needs
/// one to keep a stranger's failed handshakes to a line a minute), and the state is the event's fields
/// (AkkaLogState: its time, source, message, and a server's srvid and alias), without a second timestamp,
/// level and thread inside the host logger's own line.
/// </summary>
public sealed class AkkaLogger : ReceiveActor, IRequiresMessageQueue<ILoggerMessageQueueSemantics>
{
    public AkkaLogger()
    {
        var factory = Context.System.Settings.Setup.Get<LoggerFactorySetup>().Value?.LoggerFactory
                      ?? throw new InvalidOperationException("AkkaLogger needs Akka.Hosting's LoggerFactorySetup");
        var logger = factory.CreateLogger<ActorSystem>();
        var filter = Context.System.Settings.LogFilter;
        var system = Context.System;
        // Looked up at the first server's line, not here: loggers start before the node registers its NodeServices.
        Telemetry.CollectorMetrics? metrics = null;
        string? AliasOf(int srvid) => (metrics ??= NodeServices.Of(system).Metrics).AliasOf(srvid);
        Receive<InitializeLogger>(_ => Sender.Tell(new LoggerInitialized()));
        Receive<LogEvent>(e =>
        {
            if (!filter.ShouldTryKeepMessage(e, out _)) return;
            var level = AkkaLogState.LevelOf(e);
            if (!logger.IsEnabled(level)) return;
            logger.Log(level, default, AkkaLogState.From(e, AliasOf), e.Cause, static (s, _) => s.Message);
        });
    }
}
