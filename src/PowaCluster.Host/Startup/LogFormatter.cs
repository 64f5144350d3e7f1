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
/// (AkkaLogState) brings its own time, source, srvid and alias; any other, the node's clock's now and its category.
/// </summary>
public sealed class LogFormatter : ConsoleFormatter, IDisposable
{
    public const string FormatterName = "powa";
    readonly IDisposable? _reload;
    readonly TimeProvider _time;
    LogFormatterOptions _options;

    public LogFormatter(IOptionsMonitor<LogFormatterOptions> options, TimeProvider time) : base(FormatterName)
    {
        _time = time;
        _options = options.CurrentValue;
        _reload = options.OnChange(o => _options = o);
    }

    public override void Write<TState>(in LogEntry<TState> entry, IExternalScopeProvider? scopes, TextWriter writer)
    {
        var message = entry.Formatter?.Invoke(entry.State, entry.Exception) ?? entry.State?.ToString() ?? "";
        var akka = entry.State as AkkaLogState;
        // A line from outside Akka is stamped when it is written, on the node's clock (CollectorRuntime.Time).
        writer.WriteLine(LogLine.Format(_options.Json, akka?.TimestampUtc ?? _time.GetUtcNow().UtcDateTime, entry.LogLevel, akka?.Source ?? entry.Category,
            akka?.SrvId, akka?.Alias, message, entry.Exception));
    }

    public void Dispose() => _reload?.Dispose();
}
