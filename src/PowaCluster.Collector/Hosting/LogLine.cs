using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace PowaCluster.Collector.Hosting;

/// <summary>
/// The node's log line, one per event with one timestamp (UTC) and one level. Plain:
/// <c>2026-11-30T18:31:22.444Z INFO  [srvid=3 alias=prod-1] Server 3: connected to 10.0.0.3:5432</c>, the
/// source in brackets when the event is not a server's (an actor path, or a .NET class). JSON (--log-format
/// json): <c>{"time":…,"level":"info","source":…,"srvid":3,"alias":"prod-1","message":…,"exception":…}</c>,
/// srvid and alias only on a server's events. An exception is its type and message on the plain line, the
/// whole text (stack trace included) in JSON. Nothing here adds a password: messages never hold one. Written
/// by the host's console formatter and by Akka's logger of last resort (AkkaStdoutLogger).
/// </summary>
public static class LogLine
{
    public static string Format(bool json, DateTime timeUtc, LogLevel level, string source, int? srvId, string? alias,
        string message, Exception? e) => json
        ? Json(timeUtc, level, source, srvId, alias, message, e)
        : Plain(timeUtc, level, source, srvId, alias, message, e);

    static string Plain(DateTime time, LogLevel level, string source, int? srvId, string? alias, string message, Exception? e)
    {
        var sb = new StringBuilder(128 + message.Length);
        sb.Append(Time(time)).Append(' ').Append(Level(level).ToUpperInvariant().PadRight(5)).Append(' ');
        if (srvId is { } id)
        {
            sb.Append("[srvid=").Append(id);
            if (alias is not null) sb.Append(" alias=").Append(OneLine(alias));
            sb.Append("] ");
        }
        else sb.Append('[').Append(source).Append("] ");
        sb.Append(OneLine(message));
        for (var x = e; x is not null; x = x.InnerException)
            sb.Append(x == e ? " | " : " <- ").Append(x.GetType().FullName).Append(": ").Append(OneLine(x.Message));
        return sb.ToString();
    }

    static string Json(DateTime time, LogLevel level, string source, int? srvId, string? alias, string message, Exception? e)
    {
        using var buffer = new MemoryStream(256);
        using (var j = new Utf8JsonWriter(buffer))
        {
            j.WriteStartObject();
            j.WriteString("time", Time(time));
            j.WriteString("level", Level(level));
            j.WriteString("source", source);
            if (srvId is { } id)
            {
                j.WriteNumber("srvid", id);
                if (alias is not null) j.WriteString("alias", alias);
            }
            j.WriteString("message", message);
            if (e is not null) j.WriteString("exception", e.ToString());
            j.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }

    static string Time(DateTime t) => t.ToString("yyyy-MM-ddTHH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);

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
}
