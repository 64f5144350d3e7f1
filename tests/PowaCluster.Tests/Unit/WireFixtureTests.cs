using System.Runtime.CompilerServices;
using Akka.Actor;
using PowaCluster.Collector.Actors;
using PowaCluster.Collector.Hosting;
using PowaCluster.Collector.Serialization;
using Xunit;

namespace PowaCluster.Tests.Unit;

/// <summary>
/// Golden bytes: Fixtures/wire/VERSION.txt holds every wire message as powa-cluster VERSION wrote it, and every
/// later build must read every file there. This build's own file must be exactly what it writes (a change
/// of format is a new file, never an edit), and 0.1.0's is what it still writes to a 0.1.0 node during a
/// rollout. A new version's file is written by running these tests with POWA_WRITE_WIRE_FIXTURES=1.
/// </summary>
public sealed class WireFixtureTests() : Akka.TestKit.Xunit2.TestKit(RemotingConfiguration.SerializationHocon)
{
    const string WriteVariable = "POWA_WRITE_WIRE_FIXTURES";
    const string Legacy = "0.1.0";

    /// <summary>Every sample, named by its type and its rank among the samples of that type.</summary>
    public static IReadOnlyList<(string Name, IWireMessage Message)> Samples { get; } =
        [.. ((IEnumerable<object[]>)WireFormatTests.Messages).Select(row => (IWireMessage)row[0])
            .Concat([new RefreshCatalogs(3, ["powa", "db ü"]), new RefreshCatalogs(4, [])])
            .GroupBy(m => m.GetType().Name)
            .SelectMany(g => g.Select((m, i) => ($"{g.Key}#{i + 1}", m)))];

    static string FixtureDir([CallerFilePath] string here = "") => Path.Combine(Path.GetDirectoryName(here)!, "..", "Fixtures", "wire");

    sealed record Line(string Name, string Manifest, byte[] Bytes);

    static List<Line> Read(string file) =>
        [.. File.ReadAllLines(file).Where(l => l.Length > 0 && !l.StartsWith('#')).Select(l => l.Split('\t'))
            .Select(f => new Line(f[0], f[1], Convert.FromBase64String(f.Length > 2 ? f[2] : "")))];

    static List<Line> Written(Func<IWireMessage, string> manifest, Func<IWireMessage, byte[]> bytes, Func<IWireMessage, bool>? had = null) =>
        [.. Samples.Where(s => had?.Invoke(s.Message) ?? true).Select(s => new Line(s.Name, manifest(s.Message), bytes(s.Message)))];

    static string Text(string version, IEnumerable<Line> lines) =>
        $"# powa-cluster {version}'s wire messages: sample, manifest, bytes (base64). Golden: never edited (WireFixtureTests).\n"
        + string.Concat(lines.Select(l => $"{l.Name}\t{l.Manifest}\t{Convert.ToBase64String(l.Bytes)}\n"));

    ClusterMessageSerializer Serializer => (ClusterMessageSerializer)Sys.Serialization.FindSerializerFor(new StopCollecting(1));

    /// <summary>Record equality, with the database names of a RefreshCatalogs compared by value.</summary>
    static void AssertSame(IWireMessage expected, object actual, string what)
    {
        if (expected is RefreshCatalogs r)
        {
            var back = Assert.IsType<RefreshCatalogs>(actual);
            Assert.True(r.SrvId == back.SrvId && r.DbNames.SequenceEqual(back.DbNames), what);
        }
        else Assert.True(expected.Equals(actual), $"{what}: {actual}");
    }

    public static TheoryData<string> Files => [.. Directory.GetFiles(FixtureDir(), "*.txt").Select(Path.GetFileName).OfType<string>()];

    [Theory]
    [MemberData(nameof(Files))]
    public void This_build_reads_every_message_of_every_version(string file)
    {
        var lines = Read(Path.Combine(FixtureDir(), file));
        Assert.NotEmpty(lines);
        var samples = Samples.ToDictionary(s => s.Name, s => s.Message);
        foreach (var l in lines)
            AssertSame(samples[l.Name], Serializer.FromBinary(l.Bytes, l.Manifest), $"{file} {l.Name}");
    }

    [Fact]
    public void This_builds_format_is_its_golden_file_and_covers_every_wire_message()
    {
        var file = Path.Combine(FixtureDir(), CollectorVersion.Text + ".txt");
        var written = Written(ProtobufWire.Manifest, ProtobufWire.ToBinary);
        if (!File.Exists(file) && Environment.GetEnvironmentVariable(WriteVariable) == "1")
            File.WriteAllText(file, Text(CollectorVersion.Text, written));
        Assert.True(File.Exists(file), $"no golden file for version {CollectorVersion.Text}: run the tests once with {WriteVariable}=1, then commit {file}");
        Assert.Equal(Text(CollectorVersion.Text, written), Text(CollectorVersion.Text, Read(file)));

        var wireTypes = typeof(IWireMessage).Assembly.GetTypes().Where(t => typeof(IWireMessage).IsAssignableFrom(t) && !t.IsInterface);
        var covered = Read(file).Select(l => l.Name.Split('#')[0]).ToHashSet();
        Assert.All(wireTypes, t => Assert.Contains(t.Name, covered));
    }

    [Fact]
    public void What_this_build_writes_to_a_0_1_0_node_is_byte_for_byte_what_0_1_0_wrote()
    {
        var golden = Read(Path.Combine(FixtureDir(), Legacy + ".txt"));
        Assert.Equal(Text(Legacy, golden), Text(Legacy, Written(LegacyWire.Manifest, LegacyWire.ToBinary, LegacyWire.Knows)));
    }

    [Fact]
    public void Fields_a_later_version_adds_are_skipped_and_fields_an_earlier_one_lacks_take_their_defaults()
    {
        foreach (var l in Read(Path.Combine(FixtureDir(), CollectorVersion.Text + ".txt")))
        {
            // Field 1000 as a varint (tag 8000) and field 1001 as bytes (tag 8010): what N+1 might add.
            byte[] later = [.. l.Bytes, 0xC0, 0x3E, 0x2A, 0xCA, 0x3E, 0x03, 0x61, 0x62, 0x63];
            AssertSame(Samples.Single(s => s.Name == l.Name).Message, Serializer.FromBinary(later, l.Manifest), $"{l.Name} with unknown fields");
        }
        // A status from a version that knew only the server and its status: nothing else is made up.
        var status = new Collector.Serialization.Wire.ServerStatus { SrvId = 5, Status = CollectorStatus.Running };
        Assert.Equal(new ServerStatus(5, CollectorStatus.Running, null, null, null, 0, 0), Serializer.FromBinary(Google.Protobuf.MessageExtensions.ToByteArray(status), "1:status"));
        Assert.Contains("is not what its manifest says", Assert.Throws<Collector.Serialization.SerializationException>(() =>
            Serializer.FromBinary([0x0A, 0x05, 0x01], "1:status")).Message);
    }
}
