using Akka.Event;

namespace PowaCluster.Collector.Hosting;

/// <summary>
/// Akka's logger of last resort (akka.stdout-logger-class): what Akka logs before AkkaLogger starts and after
/// it stops (the end of a shutdown) goes out as the node's own log line (LogLine), one timestamp and one
/// level, not Akka's "[INFO][date][Thread 0014][source]" line. Akka makes it from its class name alone, so the
/// node's LogFormat picks the class (Hocon): a plain one and a JSON one, and nothing set from outside.
/// </summary>
public abstract class AkkaStdoutLogger : MinimalLogger
{
    protected abstract bool Json { get; }

    protected override void Log(object message)
    {
        if (message is not LogEvent e) return;
        var s = AkkaLogState.From(e);
        Console.Out.WriteLine(LogLine.Format(Json, s.TimestampUtc, AkkaLogState.LevelOf(e), s.Source, s.SrvId, s.Alias, s.Message, e.Cause));
    }

    /// <summary>The setting that makes Akka use the logger of <paramref name="logFormat"/> (plain or json).</summary>
    public static string Hocon(string logFormat)
    {
        var type = logFormat == "json" ? typeof(JsonStdoutLogger) : typeof(PlainStdoutLogger);
        return $"akka.stdout-logger-class = \"{type.FullName}, {type.Assembly.GetName().Name}\"";
    }
}

/// <summary>The node's plain log line (LogFormat plain).</summary>
public sealed class PlainStdoutLogger : AkkaStdoutLogger
{
    protected override bool Json => false;
}

/// <summary>The node's JSON log line (LogFormat json).</summary>
public sealed class JsonStdoutLogger : AkkaStdoutLogger
{
    protected override bool Json => true;
}
