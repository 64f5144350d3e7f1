using Akka.Event;

namespace PowaCluster.Collector.Hosting;

/// <summary>
/// Akka's logger of last resort (akka.stdout-logger-class): what Akka logs before AkkaLogger starts and after
/// it stops (the end of a shutdown) goes out as the node's own log line (LogLine), one timestamp and one
/// level, not Akka's "[INFO][date][Thread 0014][source]" line.
/// </summary>
public sealed class AkkaStdoutLogger : MinimalLogger
{
    /// <summary>JSON lines instead of plain ones (the node's LogFormat; set by the host before the actor system starts).</summary>
    public static bool Json { get; set; }

    protected override void Log(object message)
    {
        if (message is not LogEvent e) return;
        var s = AkkaLogState.From(e);
        Console.Out.WriteLine(LogLine.Format(Json, s.TimestampUtc, AkkaLogState.LevelOf(e), s.Source, s.SrvId, s.Alias, s.Message, e.Cause));
    }

    public static readonly string Hocon = $"akka.stdout-logger-class = \"{typeof(AkkaStdoutLogger).FullName}, {typeof(AkkaStdoutLogger).Assembly.GetName().Name}\"";
}
