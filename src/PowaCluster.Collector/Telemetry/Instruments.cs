using System.Diagnostics.Metrics;

namespace PowaCluster.Collector.Telemetry;

/// <summary>
/// The process's meter and instruments, made once and never disposed (why: docs/architecture.md, "Metrics and logs"). Counters and
/// histograms are shared: their labels (srvid, datasource, outcome) already tell servers apart. A gauge reads
/// the nodes running in the process: per-server series from each, counts summed, and what only one node can
/// say for the process (cluster members, the certificate's validity) from the newest, which after a restart
/// for a renewed certificate is the node that holds it.
/// </summary>
static class Instruments
{
    static readonly Meter Meter = new(CollectorMetrics.MeterName, Hosting.CollectorVersion.Text);
    static readonly Lock Gate = new();
    static CollectorMetrics[] _nodes = []; // copy on write: an exporter's thread reads it without the lock

    internal static void Join(CollectorMetrics node)
    {
        lock (Gate) Volatile.Write(ref _nodes, [.. _nodes, node]);
    }

    internal static void Leave(CollectorMetrics node)
    {
        lock (Gate) Volatile.Write(ref _nodes, Array.FindAll(_nodes, n => !ReferenceEquals(n, node)));
    }

    static CollectorMetrics[] Nodes => Volatile.Read(ref _nodes);

    internal static readonly Counter<long> Snapshots = Meter.CreateCounter<long>("powa.snapshots", "{snapshot}",
        "Snapshots by server and outcome: stored, skipped (one already running), spooled, not_stored (repository), read_failed (remote), refused (powa versions differ)");

    internal static readonly Histogram<double> SnapshotDuration = Meter.CreateHistogram("powa.snapshot.duration", "s",
        "Duration of a snapshot's phase: read (remote to stage) or store (repository transaction)",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] });

    internal static readonly Histogram<double> DatasourceDuration = Meter.CreateHistogram("powa.datasource.read.duration", "s",
        "Time to read one datasource off a remote server (its COPY)",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30] });

    internal static readonly Histogram<long> DatasourceSize = Meter.CreateHistogram("powa.datasource.size", "By",
        "Bytes one datasource gave in one snapshot (binary COPY, as stored)",
        advice: new InstrumentAdvice<long> { HistogramBucketBoundaries = [64, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216] });

    internal static readonly Histogram<double> WriterQueueWait = Meter.CreateHistogram("powa.writer.queue.wait", "s",
        "Time repository work waited for a writer of this node",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60] });

    internal static readonly Counter<long> RemoteConnectFailures = Meter.CreateCounter<long>("powa.remote.connect.failures", "{failure}",
        "Remote connection attempts that failed (the log says why)");

    internal static readonly Counter<long> NotifyRequests = Meter.CreateCounter<long>("powa.notify.requests", "{request}",
        "NOTIFY requests on powa_collector by outcome: answered, refused, dropped");

    static Instruments()
    {
        Meter.CreateObservableGauge("powa.server.last_snapshot.age", () => Nodes.SelectMany(n => n.MeasureAges()), "s",
            "Seconds since the server's last stored snapshot (since collection started here when it has none)");
        Meter.CreateObservableGauge("powa.servers", () => Nodes.Sum(n => n.ServerCount), "{server}", "Servers this node collects");
        Meter.CreateObservableGauge("powa.writer.queue.depth", () => Nodes.Sum(n => n.QueueDepth), "{work}", "Repository work waiting for a writer of this node");
        Meter.CreateObservableGauge("powa.repository.transactions", () => Nodes.Sum(n => n.InFlight), "{transaction}",
            "Repository transactions in flight (busy writers of this node)");
        Meter.CreateObservableGauge("powa.cluster.members", () => Newest(n => n.MeasureMembers()), "{member}",
            "Cluster members by status, as this node sees them");
        Meter.CreateObservableGauge("powa.tls.certificate.validity", () => Newest(n => n.MeasureCertificate()), "s",
            "Seconds until this node's cluster TLS certificate expires (negative: expired; none without cluster TLS)");
        Meter.CreateObservableGauge("powa.spool.snapshots", () => Nodes.SelectMany(n => n.MeasureBacklog(b => b.Count)), "{snapshot}",
            "Snapshots of the server in this node's spool (read while the repository could not store them), to be replayed");
        Meter.CreateObservableGauge("powa.spool.size", () => Nodes.SelectMany(n => n.MeasureBacklog(b => b.Bytes)), "By",
            "Bytes of the server's spooled snapshots on this node");
        Meter.CreateObservableGauge("powa.spool.oldest.age", () => Nodes.SelectMany(n => n.MeasureBacklogAge()), "s",
            "Age of the server's oldest spooled snapshot on this node (0: none)");
        Meter.CreateObservableCounter("powa.spool.spooled", () => SpoolTotal(s => s.Spooled), "{snapshot}", "Snapshots written to this node's spool");
        Meter.CreateObservableCounter("powa.spool.replayed", () => SpoolTotal(s => s.Replayed), "{snapshot}",
            "Spooled snapshots stored into the repository (the replay rate)");
        Meter.CreateObservableCounter("powa.spool.dropped", () => SpoolTotal(s => s.Dropped), "{snapshot}",
            "Spooled snapshots deleted without being stored: beyond the spool's bounds, or refused by the repository for good");
        Meter.CreateObservableCounter("powa.spool.write_failures", () => SpoolTotal(s => s.WriteFailures), "{failure}",
            "Snapshots that could not be written to the spool (a full or read-only disk): lost if the repository could not take them");
    }

    /// <summary>The newest node's measurements that has any.</summary>
    static IEnumerable<Measurement<T>> Newest<T>(Func<CollectorMetrics, IReadOnlyList<Measurement<T>>> measure) where T : struct
    {
        var nodes = Nodes;
        for (var i = nodes.Length - 1; i >= 0; i--)
            if (measure(nodes[i]) is { Count: > 0 } m) return m;
        return [];
    }

    static long SpoolTotal(Func<Spooling.SpoolStats, long> value) =>
        Nodes.Sum(n => n.SpoolStats is { } s ? value(s) : 0);
}
