using Akka.Event;

namespace PowaCluster.Collector.Hosting;

/// <summary>
/// Akka's logger of last resort (akka.stdout-logger-class): what Akka logs before AkkaLogger starts and after
/// it stops (the end of a shutdown) goes out in the node's own format, one line with one timestamp and one
/// level, not Akka's "[INFO][date][Thread 0014][source]" line. The host sets <see cref="Write"/> to its log
/// formatter's line; until then a plain line.
/// </summary>
public sealed class AkkaStdoutLogger : MinimalLogger
{
    /// <summary>Writes one event (its time, Akka level, source, message, exception) as one line.</summary>
    public static Action<LogEvent, AkkaLogState>? Write { get; set; }

    protected override void Log(object message)
    {
        if (message is not LogEvent e) return;
        string text;
        try { text = e.Message?.ToString() ?? ""; }
        catch (FormatException) { text = e.Message is LogMessage m ? m.Format : ""; }
        var state = new AkkaLogState(e.Timestamp, e.LogSource, text);
        if (Write is { } write) write(e, state);
        else Console.Out.WriteLine($"{e.Timestamp:yyyy-MM-ddTHH:mm:ss.fff}Z {e.LogLevel().ToString().Replace("Level", "").ToUpperInvariant(),-5} [{state.Source}] {text}");
    }

    public static readonly string Hocon = $"akka.stdout-logger-class = \"{typeof(AkkaStdoutLogger).FullName}, {typeof(AkkaStdoutLogger).Assembly.GetName().Name}\"";
}
