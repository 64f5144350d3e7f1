using System.Diagnostics.Metrics;
using Akka.Actor;
using Akka.Configuration;
using Microsoft.Extensions.Time.Testing;
using PowaCluster.Collector.Actors;
using PowaCluster.Collector.Hosting;
using PowaCluster.Collector.Telemetry;
using Xunit;

namespace PowaCluster.Tests.Unit;

/// <summary>
/// What a node's actors share and no actor owns (its clock and its instruments) is the node's, not the
/// process's: two nodes of one process count apart, a gauge's age is measured on the node's clock, and the
/// log format reaches Akka's logger of last resort by the class it names, not by a static.
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
        metrics.Track(3, "three", record);
        var ages = new List<(double Age, object? SrvId)>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (i, l) =>
        {
            // Only this instance's meter: other tests' nodes may publish theirs meanwhile.
            if (i.Name == "powa.server.last_snapshot.age" && ReferenceEquals(i.Meter, MeterOf(metrics))) l.EnableMeasurementEvents(i);
        };
        listener.SetMeasurementEventCallback<double>((_, v, tags, _) =>
        {
            foreach (var t in tags) if (t.Key == "srvid") ages.Add((v, t.Value));
        });
        listener.Start();

        time.Advance(TimeSpan.FromSeconds(90));
        listener.RecordObservableInstruments();
        Assert.Equal([(90.0, (object?)3)], ages);

        record.Restored(time.GetUtcNow()); // the repository's last snapshot, now
        time.Advance(TimeSpan.FromSeconds(5));
        ages.Clear();
        listener.RecordObservableInstruments();
        Assert.Equal([(5.0, (object?)3)], ages);
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

    static Meter MeterOf(CollectorMetrics metrics) => metrics.Snapshots.Meter;
}
