using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using PowaCluster.Collector.Actors;

namespace PowaCluster.Collector.Telemetry;

/// <summary>
/// A node's instruments (System.Diagnostics.Metrics), under the meter <see cref="MeterName"/>: one instance per
/// actor system (NodeServices), so that nodes of one process (tests, a restart for a renewed certificate) keep
/// their own servers, pool and clock. The meter and its instruments are the process's (Instruments), never
/// disposed (why: docs/architecture.md, "Metrics and logs"): an instance joins the process's gauges while its
/// node runs and leaves them on Dispose. The host exports the meter by name (Prometheus at /metrics, OTLP
/// when OTEL_EXPORTER_OTLP_ENDPOINT is set); without a listener an instrument costs a flag test. Labels are
/// bounded: srvid and alias on per-server series only (one series per server this node collects), a
/// datasource name, an outcome or a phase from a fixed list; never an error's text.
/// </summary>
public sealed class CollectorMetrics : IDisposable
{
    public const string MeterName = "PowaCluster";
    readonly TimeProvider _time;

    /// <summary>Snapshots by server and outcome (stored, skipped, spooled, not_stored, read_failed, refused).</summary>
    public Counter<long> Snapshots => Instruments.Snapshots;

    /// <summary>Duration of a snapshot's phases: read (the remote into a stage), store (the repository's transaction).</summary>
    public Histogram<double> SnapshotDuration => Instruments.SnapshotDuration;

    /// <summary>Time of one datasource's read (its COPY) on a remote.</summary>
    public Histogram<double> DatasourceDuration => Instruments.DatasourceDuration;

    /// <summary>Bytes one datasource gave in one snapshot (binary COPY).</summary>
    public Histogram<long> DatasourceSize => Instruments.DatasourceSize;

    /// <summary>How long repository work waited for a writer.</summary>
    public Histogram<double> WriterQueueWait => Instruments.WriterQueueWait;

    /// <summary>Remote connection attempts that failed, by server.</summary>
    public Counter<long> RemoteConnectFailures => Instruments.RemoteConnectFailures;

    /// <summary>NOTIFY requests on powa_collector, by outcome: answered, refused (permission), dropped (flood bounds, malformed).</summary>
    public Counter<long> NotifyRequests => Instruments.NotifyRequests;

    /// <param name="time">the node's clock: the ages the gauges report are measured on it</param>
    public CollectorMetrics(TimeProvider time)
    {
        _time = time;
        Instruments.Join(this);
    }

    /// <summary>The node's instruments go (its actor system terminated): the process's gauges stop reporting them.</summary>
    public void Dispose() => Instruments.Leave(this);

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

    // What the process's gauges (Instruments) read of this node.
    internal int ServerCount => _servers.Count;
    internal int QueueDepth => Volatile.Read(ref _queueDepth);
    internal int InFlight => Volatile.Read(ref _inFlight);
    internal Spooling.SpoolStats? SpoolStats => Volatile.Read(ref _spool)?.Invoke();

    DateTime Now() => _time.GetUtcNow().UtcDateTime;

    internal IEnumerable<Measurement<double>> MeasureBacklog(Func<Spooling.ServerSpool, double> value)
    {
        foreach (var (record, t) in _servers)
            if (record.Backlog is { } b) yield return new Measurement<double>(value(b), ServerTags(t.SrvId, t.Alias));
    }

    internal IEnumerable<Measurement<double>> MeasureBacklogAge()
    {
        var now = Now();
        return MeasureBacklog(b => b.OldestUtc is { } t ? (now - t).TotalSeconds : 0);
    }

    internal IEnumerable<Measurement<double>> MeasureAges()
    {
        var now = Now();
        foreach (var (record, t) in _servers)
            yield return new Measurement<double>(Math.Max(0, (now - record.LastSuccessOrStartUtc).TotalSeconds), ServerTags(t.SrvId, t.Alias));
    }

    internal IReadOnlyList<Measurement<double>> MeasureCertificate() =>
        Volatile.Read(ref _certificateValidity) is { } f ? [new Measurement<double>(f())] : [];

    internal IReadOnlyList<Measurement<int>> MeasureMembers() =>
        Volatile.Read(ref _members) is { } members
            ? [.. members().Select(m => new Measurement<int>(m.Count, new KeyValuePair<string, object?>("status", m.Status)))]
            : [];
}
