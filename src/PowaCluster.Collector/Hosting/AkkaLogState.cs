using System.Collections;
using System.Text.RegularExpressions;
using Akka.Event;
using MelLevel = Microsoft.Extensions.Logging.LogLevel;

namespace PowaCluster.Collector.Hosting;

/// <summary>
/// One Akka log event as Microsoft.Extensions.Logging state (AkkaLogger): the event's own time, its source
/// (an actor path, or a class), its message, and, for an event of a server's actor (its ServerCollector or
/// that one's children), the server's srvid and alias as fields of their own. A log formatter reads them by
/// name; any other provider sees key/value pairs and the message.
/// </summary>
public sealed partial class AkkaLogState : IReadOnlyList<KeyValuePair<string, object?>>
{
    public DateTime TimestampUtc { get; }
    public string Source { get; }
    public string Message { get; }
    public int? SrvId { get; }
    public string? Alias { get; }

    /// <summary>The event's fields; its message formatted (an Akka format that does not match its arguments: the format itself).</summary>
    /// <param name="aliasOf">a server's alias by srvid (the node's CollectorMetrics); none before the node runs</param>
    public static AkkaLogState From(LogEvent e, Func<int, string?>? aliasOf = null)
    {
        string text;
        try { text = e.Message?.ToString() ?? ""; }
        catch (FormatException) { text = e.Message is LogMessage m ? m.Format : ""; }
        return new AkkaLogState(e.Timestamp, e.LogSource, text, aliasOf);
    }

    /// <summary>The event's level in Microsoft.Extensions.Logging's terms.</summary>
    public static MelLevel LevelOf(LogEvent e) => e.LogLevel() switch
    {
        Akka.Event.LogLevel.DebugLevel => MelLevel.Debug,
        Akka.Event.LogLevel.InfoLevel => MelLevel.Information,
        Akka.Event.LogLevel.WarningLevel => MelLevel.Warning,
        _ => MelLevel.Error,
    };

    public AkkaLogState(DateTime timestampUtc, string source, string message, Func<int, string?>? aliasOf = null)
    {
        (TimestampUtc, Message) = (timestampUtc, message);
        Source = ShortSource(source);
        var m = EntityPath().Match(source);
        if (m.Success && int.TryParse(m.Groups[1].ValueSpan, out var id))
        {
            SrvId = id;
            Alias = aliasOf?.Invoke(id);
        }
    }

    /// <summary>An actor path without its system's address (akka.tcp://powa-cluster@host:port): the node is the process.</summary>
    static string ShortSource(string source)
    {
        var i = source.IndexOf("://", StringComparison.Ordinal);
        if (i < 0) return source;
        var slash = source.IndexOf('/', i + 3);
        return slash < 0 ? source : source[slash..];
    }

    [GeneratedRegex(@"/server-collector/[^/]+/(\d+)(?:/|$)")]
    private static partial Regex EntityPath();

    public override string ToString() => Message;

    KeyValuePair<string, object?>[] Pairs => SrvId is { } id
        ? [new("source", Source), new("srvid", id), new("alias", Alias), new("{OriginalFormat}", Message)]
        : [new("source", Source), new("{OriginalFormat}", Message)];

    public int Count => SrvId is null ? 2 : 4;
    public KeyValuePair<string, object?> this[int index] => Pairs[index];
    public IEnumerator<KeyValuePair<string, object?>> GetEnumerator() => ((IEnumerable<KeyValuePair<string, object?>>)Pairs).GetEnumerator();
    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}
