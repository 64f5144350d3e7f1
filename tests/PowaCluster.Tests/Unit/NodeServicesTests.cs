using System.Diagnostics.Metrics;
using Akka.Actor;
using Akka.Configuration;
using Microsoft.Extensions.Time.Testing;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using PowaCluster.Collector.Actors;
using PowaCluster.Collector.Hosting;
using PowaCluster.Collector.Telemetry;
using Xunit;

namespace PowaCluster.Tests.Unit;

/// <summary>
/// What a node's actors share and no actor owns (its clock and its instruments) is the node's, not the
/// process's: two nodes of one process track their own servers, a gauge's age is measured on the node's clock,
/// a node that stops leaves the other's series to the exporter, and the log format reaches Akka's logger of last resort by the class it names, not by a static.
/// </summary>
public sealed class NodeServicesTests
{
    static readonly DateTimeOffset Start = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    [Fact]
    public async Task Two_nodes_of_one_process_have_instruments_of_their_own_and_the_registered_clock()
    {
        var time = new FakeTimeProvider(Start);
        using var metrics = new CollectorMetrics(time);
        var a = ActorSystem.Create("a");
        var b = ActorSystem.Create("b");
        try
        {
            NodeServices.Use(a, time, metrics);
            Assert.Same(metrics, NodeServices.Of(a).Metrics);
            Assert.Same(time, NodeServices.Of(a).Time);
            Assert.NotSame(metrics, NodeServices.Of(b).Metrics);
            Assert.Same(TimeProvider.System, NodeServices.Of(b).Time);

            // A server tracked by one node is not another node's.
            NodeServices.Of(a).Metrics.Track(7, "seven", new ServerRecord(Start.UtcDateTime));
            Assert.Equal("seven", NodeServices.Of(a).Metrics.AliasOf(7));
            Assert.Null(NodeServices.Of(b).Metrics.AliasOf(7));
        }
        finally
        {
            await Task.WhenAll(a.Terminate(), b.Terminate());
        }
    }

    [Fact]
    public async Task Services_asked_for_before_the_node_registers_its_own_are_refused_loudly()
    {
        var system = ActorSystem.Create("early");
        try
        {
            _ = NodeServices.Of(system).Time; // an actor that started too early: it got the defaults
            using var metrics = new CollectorMetrics(TimeProvider.System);
            var e = Assert.Throws<InvalidOperationException>(() => NodeServices.Use(system, new FakeTimeProvider(Start), metrics));
            Assert.Contains("WithNodeServices", e.Message);
        }
        finally
        {
            await system.Terminate();
        }
    }

    [Fact]
    public void A_servers_snapshot_age_is_measured_on_the_nodes_clock()
    {
        var time = new FakeTimeProvider(Start);
        using var metrics = new CollectorMetrics(time);
        var record = new ServerRecord(Start.UtcDateTime);
        metrics.Track(903, "three", record); // a srvid of this test's own: other tests' nodes report theirs meanwhile
        var ages = new List<(double Age, object? SrvId)>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (i, l) =>
        {
            if (i.Name == "powa.server.last_snapshot.age") l.EnableMeasurementEvents(i);
        };
        listener.SetMeasurementEventCallback<double>((_, v, tags, _) =>
        {
            foreach (var t in tags) if (t.Key == "srvid" && t.Value is 903) ages.Add((v, t.Value));
        });
        listener.Start();

        time.Advance(TimeSpan.FromSeconds(90));
        listener.RecordObservableInstruments();
        Assert.Equal([(90.0, (object?)903)], ages);

        record.Restored(time.GetUtcNow()); // the repository's last snapshot, now
        time.Advance(TimeSpan.FromSeconds(5));
        ages.Clear();
        listener.RecordObservableInstruments();
        Assert.Equal([(5.0, (object?)903)], ages);
    }

    [Theory]
    [InlineData("plain", typeof(PlainStdoutLogger))]
    [InlineData("json", typeof(JsonStdoutLogger))]
    public async Task The_log_format_picks_akkas_logger_of_last_resort(string format, Type expected)
    {
        var system = ActorSystem.Create("logs", ConfigurationFactory.ParseString(AkkaStdoutLogger.Hocon(format)));
        try
        {
            Assert.IsType(expected, system.Settings.StdoutLogger);
        }
        finally
        {
            await system.Terminate();
        }
    }

    [Fact]
    public void A_node_that_stops_leaves_the_series_of_the_node_still_running_to_the_exporter()
    {
        // OpenTelemetry merges same-named meters into one stream and ends it when any of them is disposed
        // (opentelemetry-dotnet#6412): a node stopping must not empty the gauges of the node still running.
        // Both nodes start before the exporter, as other nodes of a test run do before a host's exporter starts.
        var time = new FakeTimeProvider(Start);
        var stopping = new CollectorMetrics(time);
        using var running = new CollectorMetrics(time);
        var exported = new ExportedSeries();
        using var provider = Sdk.CreateMeterProviderBuilder().AddMeter(CollectorMetrics.MeterName)
            .AddReader(new BaseExportingMetricReader(exported)).Build();
        stopping.Track(911, "stopping", new ServerRecord(Start.UtcDateTime));
        running.Track(912, "running", new ServerRecord(Start.UtcDateTime));
        running.Snapshots.Add(1, CollectorMetrics.ServerTags(912, "running", "stored"));

        provider.ForceFlush();
        Assert.Contains(911, exported.Ages);
        Assert.Contains(912, exported.Ages);

        stopping.Dispose();
        for (var collection = 1; collection <= 3; collection++) // a disposed instrument's stream ends a collection later
        {
            exported.Clear();
            running.Snapshots.Add(1, CollectorMetrics.ServerTags(912, "running", "stored"));
            provider.ForceFlush();
            Assert.DoesNotContain(911, exported.Ages);
            Assert.Contains(912, exported.Ages);
            Assert.Equal(1 + collection, exported.Stored(912));
        }

        // A node started after one stopped (a restart for a renewed certificate) is exported too.
        using var next = new CollectorMetrics(time);
        next.Track(913, "next", new ServerRecord(Start.UtcDateTime));
        exported.Clear();
        provider.ForceFlush();
        Assert.Contains(913, exported.Ages);
    }

    /// <summary>What an OpenTelemetry exporter was given: the servers with an age, the stored snapshots' count.</summary>
    sealed class ExportedSeries : BaseExporter<Metric>
    {
        readonly Lock _gate = new();
        readonly HashSet<int> _ages = [];
        readonly Dictionary<int, long> _stored = [];

        public IReadOnlyCollection<int> Ages { get { lock (_gate) return [.. _ages]; } }

        public long Stored(int srvId) { lock (_gate) return _stored.GetValueOrDefault(srvId); }

        public void Clear() { lock (_gate) { _ages.Clear(); _stored.Clear(); } }

        public override ExportResult Export(in Batch<Metric> batch)
        {
            lock (_gate)
                foreach (var metric in batch)
                    foreach (ref readonly var point in metric.GetMetricPoints())
                    {
                        int? srvId = null;
                        string? outcome = null;
                        foreach (var tag in point.Tags)
                        {
                            if (tag.Key == "srvid") srvId = tag.Value as int?;
                            if (tag.Key == "outcome") outcome = tag.Value as string;
                        }
                        if (srvId is not { } id) continue;
                        if (metric.Name == "powa.server.last_snapshot.age") _ages.Add(id);
                        if (metric.Name == "powa.snapshots" && outcome == "stored") _stored[id] = point.GetSumLong();
                    }
            return ExportResult.Success;
        }
    }
}
