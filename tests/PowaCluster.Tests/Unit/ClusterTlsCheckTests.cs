using System.Security.Cryptography.X509Certificates;
using Akka.Event;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Security;
using PowaCluster.Lab.Embedded;
using Xunit;

namespace PowaCluster.Tests.Unit;

/// <summary>The node's TLS material: what is accepted, what is refused, and the start-up errors of bad files.</summary>
public sealed class ClusterTlsCheckTests
{
    static CollectorSettings Node(LabCertificates certs, string name)
    {
        var files = certs.Settings(name);
        var s = new CollectorSettings { Seeds = ["127.0.0.1:4053"] };
        (s.Tls.CertificatePath, s.Tls.KeyPath, s.Tls.CaPath) = (files["Tls__CertificatePath"], files["Tls__KeyPath"], files["Tls__CaPath"]);
        s.Validate();
        return s;
    }

    /// <summary>With Tls:AllowedNames, a certificate of the CA is a node's only under one of those names (CN or DNS name).</summary>
    [Fact]
    public void With_allowed_names_only_those_certificates_of_the_CA_are_nodes()
    {
        using var certs = LabCertificates.Create("cluster CA");
        var s = Node(certs, "a.collectors.example");
        s.Tls.AllowedNames = ["*.collectors.example", "b"];
        s.Validate();
        var tls = ClusterTls.Load(s)!;
        X509Certificate2 Read(string name) => X509Certificate2.CreateFromPem(File.ReadAllText(certs.Issue(name).Certificate));
        Assert.Null(tls.Check(Read("c.collectors.example")));
        Assert.Null(tls.Check(Read("B")));
        Assert.Contains("has no name in Tls:AllowedNames", tls.Check(Read("intruder")));
        Assert.Contains("has no name in Tls:AllowedNames", tls.Check(Read("collectors.example")));
        // The node's own certificate too, at start.
        s.Tls.AllowedNames = ["b"];
        Assert.Contains("has no name in Tls:AllowedNames", Assert.Throws<ArgumentException>(() => ClusterTls.Load(s)).Message);
        s.Tls.AllowedNames = ["a.*"];
        Assert.Contains("is not a name, nor *.suffix", Assert.Throws<ArgumentException>(s.Validate).Message);
    }

    [Fact]
    public void Only_certificates_of_the_clusters_CA_are_accepted()
    {
        using var certs = LabCertificates.Create("cluster CA");
        using var other = LabCertificates.Create("other CA");
        var tls = ClusterTls.Load(Node(certs, "a"))!;
        Assert.True(tls.Certificate.HasPrivateKey);
        var (peer, _) = certs.Issue("b");
        Assert.Null(tls.Check(X509Certificate2.CreateFromPem(File.ReadAllText(peer))));
        Assert.Equal("it presented no certificate", tls.Check(null));
        var (self, _) = certs.SelfSigned("self");
        Assert.Contains("(CN=self, issued by CN=self) is not signed by the cluster's CA", tls.Check(X509Certificate2.CreateFromPem(File.ReadAllText(self))));
        var (foreign, _) = other.Issue("foreign");
        Assert.Contains("issued by CN=other CA) is not signed by the cluster's CA", tls.Check(X509Certificate2.CreateFromPem(File.ReadAllText(foreign))));
        // No TLS for one node.
        Assert.Null(ClusterTls.Load(new CollectorSettings()));
    }

    [Fact]
    public void Only_node_certificates_are_accepted_and_the_nodes_own_is_warned_about_before_it_expires()
    {
        using var certs = LabCertificates.Create("cluster CA");
        var tls = ClusterTls.Load(Node(certs, "a"))!;
        X509Certificate2 Read(string path) => X509Certificate2.CreateFromPem(File.ReadAllText(path));
        // Of the CA, but not for both TLS roles, or the CA's own certificate: not a node.
        Assert.Contains("not for both TLS server and client authentication",
            tls.Check(Read(certs.Issue("server-only", usages: [ClusterTls.ServerAuth]).Certificate)));
        Assert.Contains("not for both TLS server and client authentication",
            tls.Check(Read(certs.Issue("email", usages: ["1.3.6.1.5.5.7.3.4"]).Certificate)));
        Assert.Contains("is a CA certificate, not a node's", tls.Check(Read(certs.CaPath)));
        // Its own certificate: a warning from 14 days before it expires, none before.
        var notAfter = tls.NotAfterUtc;
        Assert.Null(tls.ExpiryProblem(notAfter.AddDays(-15)));
        Assert.Contains("expires at", tls.ExpiryProblem(notAfter.AddDays(-13)));
        Assert.Contains("in 13 days", tls.ExpiryProblem(notAfter.AddDays(-13)));
        Assert.Contains("expired at", tls.ExpiryProblem(notAfter.AddMinutes(1)));
        // A node whose own certificate is not a node's does not start.
        var (cert, key) = certs.Issue("client-only", usages: [ClusterTls.ClientAuth]);
        var s = Node(certs, "a");
        (s.Tls.CertificatePath, s.Tls.KeyPath) = (cert, key);
        Assert.Contains("not for both TLS server and client authentication", Assert.Throws<ArgumentException>(() => ClusterTls.Load(s)).Message);
    }

    [Fact]
    public void Bad_TLS_files_are_a_clear_start_up_error()
    {
        using var certs = LabCertificates.Create("cluster CA");
        using var other = LabCertificates.Create("other CA");
        var s = Node(certs, "a");
        var missing = Node(certs, "a");
        missing.Tls.KeyPath = Path.Combine(certs.Directory, "nope.key");
        Assert.Contains($"cannot read the node's certificate {s.Tls.CertificatePath} with its key {missing.Tls.KeyPath}",
            Assert.Throws<ArgumentException>(() => ClusterTls.Load(missing)).Message);
        var noCa = Node(certs, "a");
        noCa.Tls.CaPath = noCa.Tls.KeyPath; // a PEM file with no certificate in it
        Assert.Contains("holds no PEM certificate", Assert.Throws<ArgumentException>(() => ClusterTls.Load(noCa)).Message);
        // A node whose own certificate is not of the CA it trusts would be refused by every other node: say so at start.
        var wrongCa = Node(certs, "a");
        wrongCa.Tls.CaPath = other.CaPath;
        Assert.Contains("the node's own certificate", Assert.Throws<ArgumentException>(() => ClusterTls.Load(wrongCa)).Message);
    }

    [Fact]
    public void Akkas_handshake_failures_are_one_line_per_host_a_minute()
    {
        var refusals = new TlsRefusals();
        var filter = refusals.Filter;
        const string source = "TcpServerHandler (akka://powa-cluster)";
        LogFilterDecision Decide(LogEvent e) => filter.ShouldKeepMessage(e, e.Message.ToString());
        var error = new Akka.Event.Error(null, source, typeof(object), "TLS handshake failed on channel [x] (Server side): ...");
        var notTls = new Akka.Event.Error(null, source, typeof(object), "Error caught channel [x] Cause: DotNetty.Handlers.Tls.NotSslRecordException: not an SSL/TLS record");
        Warning Rejected(int port) => new(source, typeof(object), $"Rejected incoming connection from [[::ffff:10.0.0.9]:{port}] due to TLS handshake failure. This is likely invalid or malicious traffic.");
        Assert.Equal(LogFilterDecision.Drop, Decide(error));
        Assert.Equal(LogFilterDecision.Drop, Decide(notTls));
        Assert.Equal(LogFilterDecision.Drop, Decide(new Akka.Event.Error(new DotNetty.Handlers.Tls.NotSslRecordException("not an SSL/TLS record"),
            source, typeof(object), "Error caught channel [x]")));
        Assert.Equal(LogFilterDecision.Keep, Decide(Rejected(40000)));
        Assert.Equal(LogFilterDecision.Drop, Decide(Rejected(40001))); // same host, another source port
        Assert.Equal(LogFilterDecision.Keep, Decide(new Warning(source, typeof(object), "Rejected incoming connection from [[::ffff:10.0.0.10]:1] due to TLS handshake failure.")));
        // A host whose certificate was refused (and said why) gets no second line from Akka.
        Assert.True(refusals.ShouldLog("[::ffff:10.0.0.11]", "its certificate (CN=x) is not signed by the cluster's CA"));
        Assert.False(refusals.ShouldLog("[::ffff:10.0.0.11]", "its certificate (CN=x) is not signed by the cluster's CA"));
        Assert.Equal(LogFilterDecision.Drop, Decide(new Warning(source, typeof(object), "Rejected incoming connection from [[::ffff:10.0.0.11]:5] due to TLS handshake failure.")));
        // Anything else is not this filter's business.
        Assert.Equal(LogFilterDecision.NoDecision, Decide(new Warning("akka://powa-cluster/user/x", typeof(object), "Rejected incoming connection from [[a]:1] due to TLS handshake failure")));
        Assert.Equal("[::ffff:10.0.0.5]", TlsRefusals.Host("[::ffff:10.0.0.5]:41234"));
    }
}
