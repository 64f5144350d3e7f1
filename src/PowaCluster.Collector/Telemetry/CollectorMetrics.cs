using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using PowaCluster.Collector.Actors;

namespace PowaCluster.Collector.Telemetry;

/// <summary>
/// The collector's instruments (System.Diagnostics.Metrics), under the meter <see cref="MeterName"/>. The host
/// exports them (Prometheus at /metrics, OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set); without a listener an
/// instrument costs a flag test. Labels are bounded: srvid and alias on per-server series only (one series
/// per server this node collects), a datasource name, an outcome or a phase from a fixed list; never an
/// error's text.
/// </summary>
public static class CollectorMetrics
{
    public const string MeterName = "PowaCluster";
    static readonly Meter Meter = new(MeterName, Hosting.CollectorVersion.Text);

    /// <summary>Snapshots by server and outcome (stored, skipped, spooled, not_stored, read_failed, refused).</summary>
    public static readonly Counter<long> Snapshots = Meter.CreateCounter<long>(
        "powa.snapshots", "{snapshot}", "Snapshots by server and outcome: stored, skipped (one already running), spooled, not_stored (repository), read_failed (remote), refused (powa versions differ)");

    /// <summary>Duration of a snapshot's phases: read (the remote into a stage), store (the repository's transaction).</summary>
    public static readonly Histogram<double> SnapshotDuration = Meter.CreateHistogram(
        "powa.snapshot.duration", "s", "Duration of a snapshot's phase: read (remote to stage) or store (repository transaction)",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] });

    /// <summary>Time of one datasource's read (its COPY) on a remote.</summary>
    public static readonly Histogram<double> DatasourceDuration = Meter.CreateHistogram(
        "powa.datasource.read.duration", "s", "Time to read one datasource off a remote server (its COPY)",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30] });

    /// <summary>Bytes one datasource gave in one snapshot (binary COPY).</summary>
    public static readonly Histogram<long> DatasourceSize = Meter.CreateHistogram(
        "powa.datasource.size", "By", "Bytes one datasource gave in one snapshot (binary COPY, as stored)",
        advice: new InstrumentAdvice<long> { HistogramBucketBoundaries = [64, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216] });

    /// <summary>How long repository work waited for a writer.</summary>
    public static readonly Histogram<double> WriterQueueWait = Meter.CreateHistogram(
        "powa.writer.queue.wait", "s", "Time repository work waited for a writer of this node",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60] });

    /// <summary>Remote connection attempts that failed, by server.</summary>
    public static readonly Counter<long> RemoteConnectFailures = Meter.CreateCounter<long>(
        "powa.remote.connect.failures", "{failure}", "Remote connection attempts that failed (the log says why)");

    /// <summary>NOTIFY requests on powa_collector, by outcome: answered, refused (permission), dropped (flood bounds, malformed).</summary>
    public static readonly Counter<long> NotifyRequests = Meter.CreateCounter<long>(
        "powa.notify.requests", "{request}", "NOTIFY requests on powa_collector by outcome: answered, refused, dropped");

    /// <summary>One datasource read: its time and its bytes, labelled with its name (a bounded set).</summary>
    public static void DatasourceRead(string datasource, TimeSpan elapsed, long bytes)
    {
        if (!DatasourceDuration.Enabled && !DatasourceSize.Enabled) return;
        var tag = new KeyValuePair<string, object?>("datasource", datasource);
        DatasourceDuration.Record(elapsed.TotalSeconds, tag);
        DatasourceSize.Record(bytes, tag);
    }

    static int _queueDepth, _inFlight;

    /// <summary>The writer pool's queue and busy writers, set by SnapshotWriterPool.</summary>
    public static void WriterPool(int queued, int busy) => (_queueDepth, _inFlight) = (queued, busy);

    /// <summary>
    /// The servers this process collects (their ServerCollector's record), for the per-server gauges and the
    /// log's alias field. Keyed by record, not srvid: actor systems of tests may share a process.
    /// </summary>
    static readonly ConcurrentDictionary<ServerRecord, TrackedServer> Servers = new();

    sealed class TrackedServer(int srvId, string alias)
    {
        public int SrvId { get; } = srvId;
        public volatile string Alias = alias;
    }

    public static void Track(int srvId, string? alias, ServerRecord record)
    {
        var label = string.IsNullOrEmpty(alias) ? "" : alias;
        Servers.AddOrUpdate(record, _ => new TrackedServer(srvId, label), (_, t) =>
        {
            if (t.SrvId != srvId) return new TrackedServer(srvId, label);
            t.Alias = label;
            return t;
        });
    }

    /// <summary>The alias of a server this process collects, for its log lines.</summary>
    public static string? AliasOf(int srvId)
    {
        foreach (var (_, t) in Servers) // the dictionary's enumerator: no copy
            if (t.SrvId == srvId) return t.Alias.Length > 0 ? t.Alias : null;
        return null;
    }

    public static void Untrack(ServerRecord record) => Servers.TryRemove(record, out _);

    /// <summary>The labels of a per-server series.</summary>
    public static KeyValuePair<string, object?>[] ServerTags(int srvId, string? alias, string? outcome = null) => outcome is null
        ? [new("srvid", srvId), new("alias", alias ?? "")]
        : [new("srvid", srvId), new("alias", alias ?? ""), new("outcome", outcome)];

    /// <summary>The node's spool totals, read at each collection: set with the node's runtime.</summary>
    public static Func<Spooling.SpoolStats>? Spool { get; set; }

    /// <summary>Cluster membership, read at each collection: set by the host once its actor system runs.</summary>
    public static Func<IEnumerable<(string Status, int Count)>>? Members { get; set; }

    /// <summary>Seconds until the node's cluster TLS certificate expires, by the node's TimeProvider; null without cluster TLS.</summary>
    public static Func<double>? CertificateValidity { get; set; }

    static CollectorMetrics()
    {
        Meter.CreateObservableGauge("powa.server.last_snapshot.age", ObserveAges, "s",
            "Seconds since the server's last stored snapshot (since collection started here when it has none)");
        Meter.CreateObservableGauge("powa.servers", () => Servers.Count, "{server}", "Servers this node collects");
        Meter.CreateObservableGauge("powa.writer.queue.depth", () => _queueDepth, "{work}", "Repository work waiting for a writer of this node");
        Meter.CreateObservableGauge("powa.repository.transactions", () => _inFlight, "{transaction}",
            "Repository transactions in flight (busy writers of this node)");
        Meter.CreateObservableGauge("powa.cluster.members", ObserveMembers, "{member}", "Cluster members by status, as this node sees them");
        Meter.CreateObservableGauge("powa.tls.certificate.validity", ObserveCertificate, "s",
            "Seconds until this node's cluster TLS certificate expires (negative: expired; none without cluster TLS)");
        Meter.CreateObservableGauge("powa.spool.snapshots", () => ObserveBacklog(b => b.Count), "{snapshot}",
            "Snapshots of the server in this node's spool (read while the repository could not store them), to be replayed");
        Meter.CreateObservableGauge("powa.spool.size", () => ObserveBacklog(b => b.Bytes), "By", "Bytes of the server's spooled snapshots on this node");
        Meter.CreateObservableGauge("powa.spool.oldest.age", () => ObserveBacklog(b => b.OldestUtc is { } t ? (Wall() - t).TotalSeconds : 0), "s",
            "Age of the server's oldest spooled snapshot on this node (0: none)");
        Meter.CreateObservableCounter("powa.spool.spooled", () => Spool?.Invoke().Spooled ?? 0, "{snapshot}", "Snapshots written to this node's spool");
        Meter.CreateObservableCounter("powa.spool.replayed", () => Spool?.Invoke().Replayed ?? 0, "{snapshot}",
            "Spooled snapshots stored into the repository (the replay rate)");
        Meter.CreateObservableCounter("powa.spool.dropped", () => Spool?.Invoke().Dropped ?? 0, "{snapshot}",
            "Spooled snapshots deleted without being stored: beyond the spool's bounds, or refused by the repository for good");
        Meter.CreateObservableCounter("powa.spool.write_failures", () => Spool?.Invoke().WriteFailures ?? 0, "{failure}",
            "Snapshots that could not be written to the spool (a full or read-only disk): lost if the repository could not take them");
    }

    // The metrics are observed by the exporter's thread when it collects, outside any actor system: an age is
    // measured against the wall clock, which is what a scrape means (the one use of it in the collector).
    static DateTime Wall() => TimeProvider.System.GetUtcNow().UtcDateTime;

    static IEnumerable<Measurement<double>> ObserveBacklog(Func<Spooling.ServerSpool, double> value)
    {
        foreach (var (record, t) in Servers)
            if (record.Backlog is { } b) yield return new Measurement<double>(value(b), ServerTags(t.SrvId, t.Alias));
    }

    static IEnumerable<Measurement<double>> ObserveAges()
    {
        var now = Wall();
        foreach (var (record, t) in Servers)
            yield return new Measurement<double>(Math.Max(0, (now - record.LastSuccessOrStartUtc).TotalSeconds), ServerTags(t.SrvId, t.Alias));
    }

    static IEnumerable<Measurement<double>> ObserveCertificate() =>
        CertificateValidity is { } f ? [new Measurement<double>(f())] : [];

    static IEnumerable<Measurement<int>> ObserveMembers()
    {
        if (Members is not { } members) yield break;
        foreach (var (status, count) in members())
            yield return new Measurement<int>(count, new KeyValuePair<string, object?>("status", status));
    }
}
