using System.Collections.Concurrent;
using System.Text.RegularExpressions;
using Akka.Event;

namespace PowaCluster.Collector.Security;

/// <summary>
/// One line per refused peer, not one per attempt. A process that reaches ClusterPort without a certificate of
/// the cluster's CA retries every few seconds; Akka.Remote logs each failed handshake as an error with a stack
/// trace and a warning. Instead: ClusterTls's validator logs why a certificate is refused (once a minute per
/// host and reason), and <see cref="Filter"/> drops Akka's handshake errors and keeps its "Rejected incoming
/// connection" warning (a peer that sent no TLS at all, or no certificate) once a minute per host that was not
/// already reported. Bounded: the table is cleared past 10,000 entries.
/// </summary>
public sealed partial class TlsRefusals(TimeProvider? time = null)
{
    readonly TimeProvider _time = time ?? TimeProvider.System;
    public static readonly TimeSpan Quiet = TimeSpan.FromMinutes(1);
    readonly ConcurrentDictionary<string, DateTime> _last = new();

    /// <summary>True when nothing was said of this key within a minute (and it is now said).</summary>
    public bool ShouldLog(string host, string? reason)
    {
        if (_last.Count > 10_000) _last.Clear();
        var key = reason is null ? host : host + "\n" + reason;
        var now = _time.GetUtcNow().UtcDateTime;
        if (_last.TryGetValue(key, out var last) && now - last < Quiet) return false;
        if (reason is null && _last.TryGetValue(host + "\n*", out var any) && now - any < Quiet) return false;
        _last[key] = now;
        if (reason is not null) _last[host + "\n*"] = now;
        return true;
    }

    /// <summary>[::ffff:10.0.0.5]:41234 -> [::ffff:10.0.0.5]: a peer's source port changes with every attempt.</summary>
    public static string Host(string? peer)
    {
        if (string.IsNullOrEmpty(peer)) return "";
        var colon = peer.LastIndexOf(':');
        return colon > 0 && peer[(colon + 1)..].All(char.IsAsciiDigit) ? peer[..colon] : peer;
    }

    public LogFilterBase Filter => new AkkaHandshakeFilter(this);

    [GeneratedRegex(@"^Rejected incoming connection from \[(.*)\] due to TLS handshake failure")]
    private static partial Regex Rejected();

    sealed class AkkaHandshakeFilter(TlsRefusals refusals) : LogFilterBase
    {
        public override LogFilterType FilterType => LogFilterType.Content;

        public override LogFilterDecision ShouldKeepMessage(LogEvent content, string? expandedMessage = null)
        {
            if (content.LogSource is null || !content.LogSource.Contains("TcpServerHandler")) return LogFilterDecision.NoDecision;
            // The message alone: the expanded one starts with the level, time and thread.
            var text = content.Message?.ToString() ?? "";
            if (content.LogLevel() == LogLevel.ErrorLevel &&
                (text.Contains("TLS handshake failed") || text.Contains("NotSslRecordException") ||
                 content.Cause?.GetType().Name == "NotSslRecordException"))
                return LogFilterDecision.Drop;
            var m = Rejected().Match(text);
            if (!m.Success) return LogFilterDecision.NoDecision;
            return refusals.ShouldLog(Host(m.Groups[1].Value), null) ? LogFilterDecision.Keep : LogFilterDecision.Drop;
        }
    }
}
