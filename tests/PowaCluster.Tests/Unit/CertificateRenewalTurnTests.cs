using Akka.Actor;
using PowaCluster.Host.Startup;
using Xunit;

namespace PowaCluster.Tests.Unit;

/// <summary>Nodes restart for a renewed certificate one after another, in an order every node agrees on.</summary>
public sealed class CertificateRenewalTurnTests
{
    static Address Node(string host, int port) => new("akka.ssl.tcp", "powa-cluster", host, port);

    [Fact]
    public void Each_node_waits_its_place_by_address_times_the_spacing()
    {
        Address[] up = [Node("10.0.0.3", 4053), Node("10.0.0.1", 4053), Node("10.0.0.2", 4053)];
        var spacing = TimeSpan.FromMinutes(2);
        // Whatever order each node lists the members in, the turns are the same.
        Assert.Equal(TimeSpan.Zero, CertificateRenewal.TurnOf(up, Node("10.0.0.1", 4053), spacing));
        Assert.Equal(TimeSpan.FromMinutes(2), CertificateRenewal.TurnOf(up.Reverse(), Node("10.0.0.2", 4053), spacing));
        Assert.Equal(TimeSpan.FromMinutes(4), CertificateRenewal.TurnOf(up, Node("10.0.0.3", 4053), spacing));
        // Not up among them (joining, or alone before the cluster formed): at once.
        Assert.Equal(TimeSpan.Zero, CertificateRenewal.TurnOf(up, Node("10.0.0.9", 4053), spacing));
    }
}
