using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using PowaCluster.Collector.Actors;

namespace PowaCluster.Collector.Telemetry;

/// <summary>
/// A node's instruments (System.Diagnostics.Metrics), under the meter <see cref="MeterName"/>: one instance per
/// actor system (NodeServices), so that nodes of one process (tests, a restart for a renewed certificate) count
/// apart. The host exports the meter by name (Prometheus at /metrics, OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is
/// set); without a listener an instrument costs a flag test. Labels are bounded: srvid and alias on per-server
/// series only (one series per server this node collects), a datasource name, an outcome or a phase from a
/// fixed list; never an error's text.
/// </summary>
public sealed class CollectorMetrics : IDisposable
{
    public const string MeterName = "PowaCluster";
    readonly Meter _meter;
    readonly TimeProvider _time;

    /// <summary>Snapshots by server and outcome (stored, skipped, spooled, not_stored, read_failed, refused).</summary>
    public Counter<long> Snapshots { get; }

    /// <summary>Duration of a snapshot's phases: read (the remote into a stage), store (the repository's transaction).</summary>
    public Histogram<double> SnapshotDuration { get; }

    /// <summary>Time of one datasource's read (its COPY) on a remote.</summary>
    public Histogram<double> DatasourceDuration { get; }

    /// <summary>Bytes one datasource gave in one snapshot (binary COPY).</summary>
    public Histogram<long> DatasourceSize { get; }

    /// <summary>How long repository work waited for a writer.</summary>
    public Histogram<double> WriterQueueWait { get; }

    /// <summary>Remote connection attempts that failed, by server.</summary>
    public Counter<long> RemoteConnectFailures { get; }

    /// <summary>NOTIFY requests on powa_collector, by outcome: answered, refused (permission), dropped (flood bounds, malformed).</summary>
    public Counter<long> NotifyRequests { get; }

    /// <param name="time">the node's clock: the ages the gauges report are measured on it</param>
    public CollectorMetrics(TimeProvider time)
    {
        _time = time;
        _meter = new Meter(MeterName, Hosting.CollectorVersion.Text);
        Snapshots = _meter.CreateCounter<long>("powa.snapshots", "{snapshot}",
            "Snapshots by server and outcome: stored, skipped (one already running), spooled, not_stored (repository), read_failed (remote), refused (powa versions differ)");
        SnapshotDuration = _meter.CreateHistogram("powa.snapshot.duration", "s",
            "Duration of a snapshot's phase: read (remote to stage) or store (repository transaction)",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] });
        DatasourceDuration = _meter.CreateHistogram("powa.datasource.read.duration", "s", "Time to read one datasource off a remote server (its COPY)",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30] });
        DatasourceSize = _meter.CreateHistogram("powa.datasource.size", "By", "Bytes one datasource gave in one snapshot (binary COPY, as stored)",
            advice: new InstrumentAdvice<long> { HistogramBucketBoundaries = [64, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216] });
        WriterQueueWait = _meter.CreateHistogram("powa.writer.queue.wait", "s", "Time repository work waited for a writer of this node",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60] });
        RemoteConnectFailures = _meter.CreateCounter<long>("powa.remote.connect.failures", "{failure}", "Remote connection attempts that failed (the log says why)");
        NotifyRequests = _meter.CreateCounter<long>("powa.notify.requests", "{request}", "NOTIFY requests on powa_collector by outcome: answered, refused, dropped");

        _meter.CreateObservableGauge("powa.server.last_snapshot.age", MeasureAges, "s",
            "Seconds since the server's last stored snapshot (since collection started here when it has none)");
        _meter.CreateObservableGauge("powa.servers", () => _servers.Count, "{server}", "Servers this node collects");
        _meter.CreateObservableGauge("powa.writer.queue.depth", () => Volatile.Read(ref _queueDepth), "{work}", "Repository work waiting for a writer of this node");
        _meter.CreateObservableGauge("powa.repository.transactions", () => Volatile.Read(ref _inFlight), "{transaction}",
            "Repository transactions in flight (busy writers of this node)");
        _meter.CreateObservableGauge("powa.cluster.members", MeasureMembers, "{member}", "Cluster members by status, as this node sees them");
        _meter.CreateObservableGauge("powa.tls.certificate.validity", MeasureCertificate, "s",
            "Seconds until this node's cluster TLS certificate expires (negative: expired; none without cluster TLS)");
        _meter.CreateObservableGauge("powa.spool.snapshots", () => MeasureBacklog(b => b.Count), "{snapshot}",
            "Snapshots of the server in this node's spool (read while the repository could not store them), to be replayed");
        _meter.CreateObservableGauge("powa.spool.size", () => MeasureBacklog(b => b.Bytes), "By", "Bytes of the server's spooled snapshots on this node");
        _meter.CreateObservableGauge("powa.spool.oldest.age", () => MeasureBacklog(b => b.OldestUtc is { } t ? (Now() - t).TotalSeconds : 0), "s",
            "Age of the server's oldest spooled snapshot on this node (0: none)");
        _meter.CreateObservableCounter("powa.spool.spooled", () => _spool?.Invoke().Spooled ?? 0, "{snapshot}", "Snapshots written to this node's spool");
        _meter.CreateObservableCounter("powa.spool.replayed", () => _spool?.Invoke().Replayed ?? 0, "{snapshot}",
            "Spooled snapshots stored into the repository (the replay rate)");
        _meter.CreateObservableCounter("powa.spool.dropped", () => _spool?.Invoke().Dropped ?? 0, "{snapshot}",
            "Spooled snapshots deleted without being stored: beyond the spool's bounds, or refused by the repository for good");
        _meter.CreateObservableCounter("powa.spool.write_failures", () => _spool?.Invoke().WriteFailures ?? 0, "{failure}",
            "Snapshots that could not be written to the spool (a full or read-only disk): lost if the repository could not take them");
    }

    /// <summary>One datasource read: its time and its bytes, labelled with its name (a bounded set).</summary>
    public void DatasourceRead(string datasource, TimeSpan elapsed, long bytes)
    {
        if (!DatasourceDuration.Enabled && !DatasourceSize.Enabled) return;
        var tag = new KeyValuePair<string, object?>("datasource", datasource);
        DatasourceDuration.Record(elapsed.TotalSeconds, tag);
        DatasourceSize.Record(bytes, tag);
    }

    int _queueDepth, _inFlight;

    /// <summary>The writer pool's queue and busy writers, set by SnapshotWriterPool.</summary>
    public void WriterPool(int queued, int busy)
    {
        Volatile.Write(ref _queueDepth, queued);
        Volatile.Write(ref _inFlight, busy);
    }

    /// <summary>
    /// The servers this node collects (their ServerCollector's record), for the per-server gauges and the log's
    /// alias field. Keyed by record, not srvid: a server's entity stopping and its next one starting overlap.
    /// </summary>
    readonly ConcurrentDictionary<ServerRecord, TrackedServer> _servers = new();

    sealed class TrackedServer(int srvId, string alias)
    {
        public int SrvId { get; } = srvId;
        public volatile string Alias = alias;
    }

    public void Track(int srvId, string? alias, ServerRecord record)
    {
        var label = string.IsNullOrEmpty(alias) ? "" : alias;
        _servers.AddOrUpdate(record, _ => new TrackedServer(srvId, label), (_, t) =>
        {
            if (t.SrvId != srvId) return new TrackedServer(srvId, label);
            t.Alias = label;
            return t;
        });
    }

    /// <summary>The alias of a server this node collects, for its log lines.</summary>
    public string? AliasOf(int srvId)
    {
        foreach (var (_, t) in _servers) // the dictionary's enumerator: no copy
            if (t.SrvId == srvId) return t.Alias.Length > 0 ? t.Alias : null;
        return null;
    }

    public void Untrack(ServerRecord record) => _servers.TryRemove(record, out _);

    /// <summary>The labels of a per-server series.</summary>
    public static KeyValuePair<string, object?>[] ServerTags(int srvId, string? alias, string? outcome = null) => outcome is null
        ? [new("srvid", srvId), new("alias", alias ?? "")]
        : [new("srvid", srvId), new("alias", alias ?? ""), new("outcome", outcome)];

    // What the node's set-up gives the gauges once (AkkaConfiguration): read by the exporter's thread at each collection.
    Func<Spooling.SpoolStats>? _spool;
    Func<IEnumerable<(string Status, int Count)>>? _members;
    Func<double>? _certificateValidity;

    /// <summary>The node's spool totals, read at each collection.</summary>
    public void ObserveSpool(Func<Spooling.SpoolStats> stats) => Volatile.Write(ref _spool, stats);

    /// <summary>Cluster membership by status, read at each collection.</summary>
    public void ObserveMembers(Func<IEnumerable<(string Status, int Count)>> members) => Volatile.Write(ref _members, members);

    /// <summary>Seconds until the node's cluster TLS certificate expires (none without cluster TLS).</summary>
    public void ObserveCertificate(Func<double> validity) => Volatile.Write(ref _certificateValidity, validity);

    DateTime Now() => _time.GetUtcNow().UtcDateTime;

    IEnumerable<Measurement<double>> MeasureBacklog(Func<Spooling.ServerSpool, double> value)
    {
        foreach (var (record, t) in _servers)
            if (record.Backlog is { } b) yield return new Measurement<double>(value(b), ServerTags(t.SrvId, t.Alias));
    }

    IEnumerable<Measurement<double>> MeasureAges()
    {
        var now = Now();
        foreach (var (record, t) in _servers)
            yield return new Measurement<double>(Math.Max(0, (now - record.LastSuccessOrStartUtc).TotalSeconds), ServerTags(t.SrvId, t.Alias));
    }

    IEnumerable<Measurement<double>> MeasureCertificate() =>
        Volatile.Read(ref _certificateValidity) is { } f ? [new Measurement<double>(f())] : [];

    IEnumerable<Measurement<int>> MeasureMembers()
    {
        if (Volatile.Read(ref _members) is not { } members) yield break;
        foreach (var (status, count) in members())
            yield return new Measurement<int>(count, new KeyValuePair<string, object?>("status", status));
    }

    /// <summary>The node's instruments go (its actor system terminated): exporters stop reporting them.</summary>
    public void Dispose() => _meter.Dispose();
}
