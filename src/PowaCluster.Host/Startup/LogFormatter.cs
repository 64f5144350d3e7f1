using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;
using Akka.Event;
using LogLevel = Microsoft.Extensions.Logging.LogLevel;
using PowaCluster.Collector.Hosting;

namespace PowaCluster.Host.Startup;

public sealed class LogFormatterOptions : ConsoleFormatterOptions
{
    /// <summary>One JSON object a line instead of plain text.</summary>
    public bool Json { get; set; }
}

/// <summary>
/// The node's log, one line per event with one timestamp (UTC) and one level. Plain:
/// <c>2026-11-30T18:31:22.444Z INFO  [srvid=3 alias=prod-1] Server 3: connected to 10.0.0.3:5432</c>, the
/// source in brackets when the event is not a server's (an actor path, or a .NET class). JSON (--log-format
/// json): <c>{"time":…,"level":"info","source":…,"srvid":3,"alias":"prod-1","message":…,"exception":…}</c>,
/// srvid and alias only on a server's events. An exception is its type and message on the plain line, the
/// whole text (stack trace included) in JSON. Nothing here adds a password: messages never hold one.
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

    /// <summary>Akka's logger of last resort (before the loggers start, after they stop) in the same format.</summary>
    public static void UseForAkkaStdout(bool json) => AkkaStdoutLogger.Write = (e, state) =>
    {
        var level = e.LogLevel() switch
        {
            Akka.Event.LogLevel.DebugLevel => LogLevel.Debug,
            Akka.Event.LogLevel.InfoLevel => LogLevel.Information,
            Akka.Event.LogLevel.WarningLevel => LogLevel.Warning,
            _ => LogLevel.Error,
        };
        var w = Console.Out;
        if (json) WriteJson(w, state.TimestampUtc, level, state.Source, state, state.Message, e.Cause);
        else WritePlain(w, state.TimestampUtc, level, state.Source, state, state.Message, e.Cause);
    };

    public override void Write<TState>(in LogEntry<TState> entry, IExternalScopeProvider? scopes, TextWriter writer)
    {
        var message = entry.Formatter?.Invoke(entry.State, entry.Exception) ?? entry.State?.ToString() ?? "";
        var akka = entry.State as AkkaLogState;
        var time = akka?.TimestampUtc ?? DateTime.UtcNow;
        var source = akka?.Source ?? entry.Category;
        if (_options.Json) WriteJson(writer, time, entry.LogLevel, source, akka, message, entry.Exception);
        else WritePlain(writer, time, entry.LogLevel, source, akka, message, entry.Exception);
    }

    static void WritePlain(TextWriter w, DateTime time, LogLevel level, string source, AkkaLogState? akka, string message, Exception? e)
    {
        var sb = new StringBuilder(128 + message.Length);
        sb.Append(time.ToString("yyyy-MM-ddTHH:mm:ss.fff'Z'", System.Globalization.CultureInfo.InvariantCulture)).Append(' ');
        sb.Append(Level(level).ToUpperInvariant().PadRight(5)).Append(' ');
        if (akka?.SrvId is { } id)
        {
            sb.Append("[srvid=").Append(id);
            if (akka.Alias is { } alias) sb.Append(" alias=").Append(OneLine(alias));
            sb.Append("] ");
        }
        else sb.Append('[').Append(source).Append("] ");
        sb.Append(OneLine(message));
        for (var x = e; x is not null; x = x.InnerException)
            sb.Append(x == e ? " | " : " <- ").Append(x.GetType().FullName).Append(": ").Append(OneLine(x.Message));
        w.WriteLine(sb.ToString());
    }

    static void WriteJson(TextWriter w, DateTime time, LogLevel level, string source, AkkaLogState? akka, string message, Exception? e)
    {
        using var buffer = new MemoryStream(256);
        using (var j = new Utf8JsonWriter(buffer))
        {
            j.WriteStartObject();
            j.WriteString("time", time.ToString("yyyy-MM-ddTHH:mm:ss.fff'Z'", System.Globalization.CultureInfo.InvariantCulture));
            j.WriteString("level", Level(level));
            j.WriteString("source", source);
            if (akka?.SrvId is { } id)
            {
                j.WriteNumber("srvid", id);
                if (akka.Alias is { } alias) j.WriteString("alias", alias);
            }
            j.WriteString("message", message);
            if (e is not null) j.WriteString("exception", e.ToString());
            j.WriteEndObject();
        }
        w.WriteLine(Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length));
    }

    static string Level(LogLevel l) => l switch
    {
        LogLevel.Trace => "trace",
        LogLevel.Debug => "debug",
        LogLevel.Information => "info",
        LogLevel.Warning => "warn",
        LogLevel.Error => "error",
        _ => "fatal",
    };

    static string OneLine(string s) => s.Contains('\n') || s.Contains('\r') ? s.Replace("\r\n", " ").Replace('\n', ' ').Replace('\r', ' ') : s;

    public void Dispose() => _reload?.Dispose();
}
