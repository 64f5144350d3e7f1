using PowaCluster.Collector.Control;
using Xunit;

namespace PowaCluster.Tests.Unit;

public sealed class CollectorProtocolTests
{
    [Fact]
    public void Parses_requests_as_powa_web_sends_them()
    {
        var r = CollectorProtocol.Parse("WORKERS_STATUS r_powa_42 3 ");
        Assert.Equal("WORKERS_STATUS", r.Command);
        Assert.Equal("r_powa_42", r.Channel);
        Assert.Equal(["3"], r.Args);
        Assert.True(r.WantsReply);
        Assert.False(CollectorProtocol.Parse("RELOAD - ").WantsReply);
        Assert.False(CollectorProtocol.Parse("RELOAD").WantsReply);
        Assert.Equal("", CollectorProtocol.Parse("   ").Command);
    }

    [Fact]
    public void Replies_are_command_status_data()
    {
        Assert.Equal("RELOAD OK OK", CollectorProtocol.Reply("RELOAD", "OK", "OK"));
        Assert.Equal("FOO UNKNOWN ", CollectorProtocol.Reply("FOO", "UNKNOWN", ""));
        Assert.Equal("WORKERS_STATUS KO ANSWER TOO LONG", CollectorProtocol.Reply("WORKERS_STATUS", "OK", new string('x', 7990)));
        Assert.Equal(7999, CollectorProtocol.Reply("C", "OK", new string('x', 7994))!.Length);
        Assert.Equal("C KO ANSWER TOO LONG", CollectorProtocol.Reply("C", "OK", new string('x', 7995)));
        // Multi-byte characters count as bytes.
        Assert.Equal("C KO ANSWER TOO LONG", CollectorProtocol.Reply("C", "OK", new string('é', 4000)));
        Assert.Equal(7999, CollectorProtocol.Reply(new string('A', 7990), "UNKNOWN", "")!.Length);
        Assert.Null(CollectorProtocol.Reply(new string('A', 7995), "UNKNOWN", ""));
    }

    [Fact]
    public void Cluster_status_names_each_node_once()
    {
        Assert.Equal("{\"nodes\": [\"akka.tcp://powa-cluster@a:1\", \"\"], \"servers\": {\"1\": [0, \"running\"], \"2\": [1, \"no answer from its collector node\"], \"3\": [0, \"stopping\"]}}",
            CollectorProtocol.ClusterStatusJson([(3, "stopping", "akka.tcp://powa-cluster@a:1"), (1, "running", "akka.tcp://powa-cluster@a:1"),
                (2, "no answer from its collector node", null)]));
    }

    [Fact]
    public void Cluster_status_gives_a_spooled_backlog_as_three_numbers_and_the_cli_reads_it_back()
    {
        var json = CollectorProtocol.ClusterStatusJson([(1, "no connection to repository server", "n", new SpoolBacklog(24, 12_582_912, 130)),
            (2, "running", "n", default)]);
        Assert.Equal("{\"nodes\": [\"n\"], \"servers\": {\"1\": [0, \"no connection to repository server\", 24, 12582912, 130], \"2\": [0, \"running\"]}}", json);
        Assert.Equal("24 (12.0 MB, oldest 2 min)", new SpoolBacklog(24, 12_582_912, 130).ToString());
        Assert.Equal("-", default(SpoolBacklog).ToString());
    }

    [Fact]
    public void Workers_json_is_laid_out_as_python_json_dumps()
    {
        Assert.Equal("{}", CollectorProtocol.WorkersJson([]));
        Assert.Equal("{\"1\": \"running\", \"12\": \"no connection to remote server\"}",
            CollectorProtocol.WorkersJson([KeyValuePair.Create(12, "no connection to remote server"), KeyValuePair.Create(1, "running")]));
        Assert.Equal("{\"3\": \"caf\\u00e9 \\\"x\\\"\"}", CollectorProtocol.WorkersJson([KeyValuePair.Create(3, "café \"x\"")]));
    }
}
