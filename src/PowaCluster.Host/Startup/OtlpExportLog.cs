using System.Diagnostics.Tracing;
using System.Globalization;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace PowaCluster.Host.Startup;

/// <summary>
/// The OpenTelemetry SDK reports a failed OTLP push (endpoint unreachable, refused, timed out) only as an
/// EventSource event: this listener puts it in the node's log, as a warning, the first of a kind and then once
/// a minute at most with the number of the same since. The SDK reports no push that succeeds, so a recovery is
/// not logged. Registered only when OTEL_EXPORTER_OTLP_ENDPOINT is set (MetricsExport).
/// </summary>
public sealed class OtlpExportLog(ILogger<OtlpExportLog> log, TimeProvider time) : EventListener, IHostedService
{
    static readonly TimeSpan Quiet = TimeSpan.FromMinutes(1);
    readonly object _lock = new();
    string? _last;
    DateTime _lastAtUtc = DateTime.MinValue;
    long _since;

    protected override void OnEventSourceCreated(EventSource source)
    {
        if (source.Name.StartsWith("OpenTelemetry-Exporter-OpenTelemetryProtocol", StringComparison.Ordinal))
            EnableEvents(source, EventLevel.Warning);
    }

    protected override void OnEventWritten(EventWrittenEventArgs e)
    {
        if (e.Level > EventLevel.Warning || e.Message is null) return;
        string text;
        try { text = string.Format(CultureInfo.InvariantCulture, e.Message, e.Payload?.ToArray() ?? []); }
        catch (FormatException) { text = e.Message; }
        // Keep the line short: the first line of an exception's text.
        var newline = text.IndexOf('\n');
        if (newline > 0) text = text[..newline].TrimEnd();
        lock (_lock)
        {
            var now = time.GetUtcNow().UtcDateTime;
            if (text == _last && now - _lastAtUtc < Quiet)
            {
                _since++;
                return;
            }
            var more = _since > 0 ? $" ({_since} more failures like the previous one since it was logged)" : "";
            (_last, _lastAtUtc, _since) = (text, now, 0);
            log.LogWarning("OTLP metrics export failed: {Error}{More}", text, more);
        }
    }

    public Task StartAsync(CancellationToken ct) => Task.CompletedTask;

    public Task StopAsync(CancellationToken ct)
    {
        Dispose();
        return Task.CompletedTask;
    }
}
