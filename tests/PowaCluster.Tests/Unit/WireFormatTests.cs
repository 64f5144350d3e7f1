using Akka.Serialization;
using PowaCluster.Collector.Actors;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Hosting;
using PowaCluster.Collector.Postgres;
using PowaCluster.Collector.Serialization;
using Xunit;

namespace PowaCluster.Tests.Unit;

/// <summary>
/// What crosses the network between nodes: the collector's messages in their explicit format, no secret in
/// any of them, and nothing through Akka's JSON fallback (which builds whatever type a payload names).
/// </summary>
public sealed class WireFormatTests() : Akka.TestKit.Xunit2.TestKit(RemotingConfiguration.SerializationHocon)
{
    public static TheoryData<object> Messages => new()
    {
        new EnsureCollecting(7, "123456", Refresh: true),
        new StopCollecting(7),
        new GetServerStatus(7),
        new ServerStatus(7, CollectorStatus.Running, "akka.ssl.tcp://powa-cluster@10.0.0.5:4053", DateTimeOffset.FromUnixTimeMilliseconds(1_790_000_000_123), "an error: é", 12, 1),
        new ServerStatus(8, CollectorStatus.NoRemote, null, null, null, 0, 0),
        new ServerStatus(9, CollectorStatus.NoRepository, "akka.tcp://powa-cluster@10.0.0.6:4053", null, "down", 3, 0, 24, 12_582_912,
            DateTimeOffset.FromUnixTimeMilliseconds(1_790_000_100_456)),
        new ForceSnapshot(7),
        new ForceSnapshotResult(7, false, "Last snapshot was less than 10s. ago"),
        new RefreshCatalogsResult(7, true, "Catalogs will be refreshed during the next snapshot"),
        new ServerHandedOff(7),
        Reload.Instance,
        new ServerStateShared(7, new SnapshotPlan(
            [new Datasource("pg_stat_statements", false, "powa_statements_src", null, "powa_statements_snapshot", "public"),
             new Datasource("pg_qualstats", true, "powa_qualstats_src", "SELECT pg_qualstats_reset()", "powa_qualstats_snapshot", null)],
            [new DbDatasource("pg_class", true, "SELECT oid, relname FROM pg_class", "\"public\".\"powa_catalog_class_src_tmp\"", ["oid", "name"], null, ["template1"]),
             new DbDatasource("all_tables", false, "SELECT relid FROM pg_stat_all_tables", null, ["oid"], ["db1", "db ü"], [])]),
            new DateTime(2026, 12, 6, 22, 30, 1, 250, DateTimeKind.Utc)),
        new ServerStateShared(8, null, null),
        new BacklogHeld(7, "akka.ssl.tcp://powa-cluster@10.0.0.5:4053", new DateTime(2026, 12, 6, 22, 0, 0, 500, DateTimeKind.Utc), 42),
        new BacklogDrained(7, "akka.ssl.tcp://powa-cluster@10.0.0.5:4053"),
        new BacklogTurn(7),
        new BacklogTurn(8, new DateTime(2026, 12, 6, 22, 5, 0, 750, DateTimeKind.Utc)),
    };

    [Theory]
    [MemberData(nameof(Messages))]
    public void Each_cluster_message_round_trips_through_its_own_serializer(object message)
    {
        var serializer = Sys.Serialization.FindSerializerFor(message);
        Assert.IsType<ClusterMessageSerializer>(serializer);
        var manifest = Akka.Serialization.Serialization.ManifestFor(serializer, message);
        var back = Sys.Serialization.Deserialize(serializer.ToBinary(message), serializer.Identifier, manifest);
        Assert.Equal(message, back);
    }

    [Fact]
    public void Refresh_catalogs_keeps_its_database_names()
    {
        var m = new RefreshCatalogs(3, ["powa", "db ü"]);
        var s = (ClusterMessageSerializer)Sys.Serialization.FindSerializerFor(m);
        var back = Assert.IsType<RefreshCatalogs>(s.FromBinary(s.ToBinary(m), s.Manifest(m)));
        Assert.Equal(3, back.SrvId);
        Assert.Equal(["powa", "db ü"], back.DbNames);
    }

    [Fact]
    public void Unknown_manifests_trailing_bytes_and_Akkas_JSON_fallback_are_refused()
    {
        var s = (ClusterMessageSerializer)Sys.Serialization.FindSerializerFor(new StopCollecting(1));
        Assert.Contains("unknown powa-cluster message manifest \"System.Diagnostics.Process\"",
            Assert.Throws<Collector.Serialization.SerializationException>(() => s.FromBinary([1, 0, 0, 0], "System.Diagnostics.Process")).Message);
        Assert.Contains("bytes left over", Assert.Throws<Collector.Serialization.SerializationException>(() =>
            s.FromBinary([1, 0, 0, 0, 9], "stop")).Message);
        Assert.ThrowsAny<EndOfStreamException>(() => s.FromBinary([1, 0], "stop"));

        // A type with no binding of its own falls back to serializer 1, which refuses it both ways.
        var fallback = Sys.Serialization.FindSerializerFor(new ServerConfig(1, "h", 5432, "u", "TopSecret99", "d", 60, null));
        Assert.IsType<RefusingSerializer>(fallback);
        Assert.Equal(1, fallback.Identifier);
        Assert.Contains("cannot be sent to another node", Assert.Throws<Collector.Serialization.SerializationException>(() =>
            fallback.ToBinary(new ServerConfig(1, "h", 5432, "u", "TopSecret99", "d", 60, null))).Message);
        var json = "{\"$type\":\"System.IO.FileInfo, System.IO.FileSystem\",\"fileName\":\"/etc/passwd\"}"u8.ToArray();
        Assert.Contains("does not deserialize it", Assert.ThrowsAny<Exception>(() =>
            Sys.Serialization.Deserialize(json, 1, "System.IO.FileInfo, System.IO.FileSystem")).ToString());
    }

    [Fact]
    public void No_message_that_crosses_the_network_carries_a_password_or_a_connection_setting()
    {
        var wire = typeof(IWireMessage).Assembly.GetTypes().Where(t => typeof(IWireMessage).IsAssignableFrom(t) && !t.IsInterface).ToList();
        Assert.Contains(typeof(EnsureCollecting), wire);
        foreach (var t in wire)
            foreach (var p in t.GetProperties())
            {
                Assert.False(p.PropertyType == typeof(ServerConfig) || p.PropertyType == typeof(ServerRow), $"{t.Name}.{p.Name} is a powa_servers row");
                Assert.DoesNotContain("password", p.Name, StringComparison.OrdinalIgnoreCase);
                Assert.DoesNotContain("host", p.Name, StringComparison.OrdinalIgnoreCase);
            }
        // Every one of them has a wire format (a new message without one fails here, not in production).
        var covered = ((IEnumerable<object[]>)Messages).Select(row => row[0].GetType()).Append(typeof(RefreshCatalogs)).ToHashSet();
        Assert.All(wire, t => Assert.Contains(t, covered));
    }
}
