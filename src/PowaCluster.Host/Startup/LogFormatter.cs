using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;
using PowaCluster.Collector.Hosting;

namespace PowaCluster.Host.Startup;

public sealed class LogFormatterOptions : ConsoleFormatterOptions
{
    /// <summary>One JSON object a line instead of plain text.</summary>
    public bool Json { get; set; }
}

/// <summary>
/// The console provider's formatter: each event as the node's log line (LogLine, plain or JSON). An Akka event
/// (AkkaLogState) brings its own time, source, srvid and alias; any other, now and its category.
/// </summary>
public sealed class LogFormatter : ConsoleFormatter, IDisposable
{
    public const string FormatterName = "powa";
    readonly IDisposable? _reload;
    LogFormatterOptions _options;

    public LogFormatter(IOptionsMonitor<LogFormatterOptions> options) : base(FormatterName)
    {
        _options = options.CurrentValue;
        _reload = options.OnChange(o => _options = o);
    }

    public override void Write<TState>(in LogEntry<TState> entry, IExternalScopeProvider? scopes, TextWriter writer)
    {
        var message = entry.Formatter?.Invoke(entry.State, entry.Exception) ?? entry.State?.ToString() ?? "";
        var akka = entry.State as AkkaLogState;
        // A line from outside Akka is stamped when it is written, by the wall clock: a log's time is the wall's.
        writer.WriteLine(LogLine.Format(_options.Json, akka?.TimestampUtc ?? DateTime.UtcNow, entry.LogLevel, akka?.Source ?? entry.Category,
            akka?.SrvId, akka?.Alias, message, entry.Exception));
    }

    public void Dispose() => _reload?.Dispose();
}
