using Microsoft.Extensions.Configuration;
using PowaCluster.Collector.Configuration;
using PowaCluster.Host.Cli;
using PowaCluster.Host.Startup;
using PowaCluster.Lab;
using Xunit;

namespace PowaCluster.Tests.Unit;

public sealed class ConfigurationTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("powa-cluster-conf-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    string Write(string name, string text)
    {
        var p = Path.Combine(_dir, name);
        File.WriteAllText(p, text);
        return p;
    }

    static IConfiguration Config(params (string Key, string Value)[] values) =>
        new ConfigurationBuilder().AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>(v.Key, v.Value))).Build();

    static CommandLine Run(params string[] args) => CommandLine.Parse(["run", .. args]);

    [Fact]
    public void Reference_file_as_powa_collector_writes_it_trailing_comma_included()
    {
        var p = Write("a.conf", "{\n \"repository\": {\n  \"dsn\": \"postgresql://powa_user@localhost:5432/powa\",\n },\n \"debug\": true\n}\n");
        var c = ReferenceConfigFile.Load(p);
        Assert.Equal("postgresql://powa_user@localhost:5432/powa", c.RepositoryDsn);
        Assert.True(c.Debug);
    }

    [Theory]
    [InlineData("{\"repository\": {}}", "must contain a repository.dsn")]
    [InlineData("{\"debug\": false}", "must contain a repository.dsn")]
    [InlineData("{\"repository\": {\"dsn\": 5}}", "must contain a repository.dsn")]
    [InlineData("{\"repository\": {\"dsn\": \"x\"}, \"debug\": \"yes\"}", "\"debug\" must be true or false")]
    [InlineData("{\"repository\": ", "is not valid JSON")]
    [InlineData("[1, 2]", "must hold a JSON object")]
    public void Invalid_reference_file_names_the_file_and_the_problem(string text, string expected)
    {
        var p = Write("bad.conf", text);
        var e = Assert.Throws<ConfigFileException>(() => ReferenceConfigFile.Load(p));
        Assert.Contains(p, e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void First_existing_location_wins()
    {
        var second = Write("second.conf", "{\"repository\": {\"dsn\": \"host=second\"}}");
        var third = Write("third.conf", "{\"repository\": {\"dsn\": \"host=third\"}}");
        var c = ReferenceConfigFile.FindAndLoad([Path.Combine(_dir, "missing.conf"), second, third]);
        Assert.Equal("host=second", c!.RepositoryDsn);
        Assert.Null(ReferenceConfigFile.FindAndLoad([Path.Combine(_dir, "missing.conf")]));
    }

    [Fact]
    public void Repository_dsn_precedence_cli_then_config_file_then_settings_then_reference_locations()
    {
        var file = Write("explicit.conf", "{\"repository\": {\"dsn\": \"host=fromfile\"}, \"debug\": true}");
        var refFile = Write("ref.conf", "{\"repository\": {\"dsn\": \"host=fromref\"}}");
        var settings = Config(("PowaCluster:RepositoryDsn", "host=fromsettings"), ("PowaCluster:WriterPoolSize", "7"));

        var (s1, r1) = SettingsLoader.Load(Run("--repository", "host=fromcli", "--config", file), settings, [refFile]);
        Assert.Equal("fromcli", r1.Host);
        Assert.Equal(7, s1.WriterPoolSize);

        var (s2, r2) = SettingsLoader.Load(Run("--config", file), settings, [refFile]);
        Assert.Equal("fromfile", r2.Host);
        Assert.True(s2.Debug);
        Assert.Equal(file, s2.RepositoryDsnSource);

        var (_, r3) = SettingsLoader.Load(Run(), settings, [refFile]);
        Assert.Equal("fromsettings", r3.Host);

        var (_, r4) = SettingsLoader.Load(Run(), Config(), [refFile]);
        Assert.Equal("fromref", r4.Host);
    }

    [Fact]
    public void No_dsn_anywhere_lists_where_it_was_looked_for()
    {
        var missing = Path.Combine(_dir, "nowhere.conf");
        var e = Assert.Throws<StartupException>(() => SettingsLoader.Load(Run(), Config(), [missing]));
        Assert.Contains("no repository DSN", e.Message);
        Assert.Contains(missing, e.Message);
    }

    [Fact]
    public void Bad_inputs_become_one_clear_startup_error()
    {
        var e1 = Assert.Throws<StartupException>(() => SettingsLoader.Load(Run("--config", Path.Combine(_dir, "nope.conf")), Config(), []));
        Assert.Contains("does not exist", e1.Message);
        var e2 = Assert.Throws<StartupException>(() => SettingsLoader.Load(Run("--repository", "host=h password=Hush42 port=x"), Config(), []));
        Assert.Contains("invalid repository DSN (from --repository)", e2.Message);
        Assert.DoesNotContain("Hush42", e2.Message);
        var e3 = Assert.Throws<StartupException>(() => SettingsLoader.Load(Run("--repository", "host=h"), Config(("PowaCluster:WriterPoolSize", "0")), []));
        Assert.Contains("WriterPoolSize", e3.Message);
    }

    [Fact]
    public void Command_line_options_and_their_errors()
    {
        var c = CommandLine.Parse(["run", "--repository", "host=h", "--pool-size", "8", "--seed", "a:1", "--seed", "b:2", "--debug"]);
        Assert.Equal(8, c.PoolSize);
        Assert.Equal(["a:1", "b:2"], c.Seeds);
        Assert.True(c.Debug);
        Assert.Contains("unknown command \"start\"", Assert.Throws<UsageException>(() => CommandLine.Parse(["start"])).Message);
        Assert.Contains("--repository needs a value", Assert.Throws<UsageException>(() => CommandLine.Parse(["run", "--repository"])).Message);
        Assert.Contains("--pool-size must be a whole number", Assert.Throws<UsageException>(() => CommandLine.Parse(["run", "--pool-size", "zero"])).Message);
        Assert.Contains("unknown option \"--seconds\" for run", Assert.Throws<UsageException>(() => CommandLine.Parse(["run", "--seconds", "3"])).Message);
        Assert.Equal(20, LabOptions.Parse(["demo", "--servers", "20"]).Servers);
        // --powa: a major (the newest release built of it) or a release's prefix.
        Assert.Equal((5, "5.1"), LabOptions.Parse(["demo", "--powa", "5.1"]) is var p51 ? (p51.Powa, p51.PowaWanted) : default);
        Assert.Equal((4, "4"), LabOptions.Parse(["demo"]) is var p4 ? (p4.Powa, p4.PowaWanted) : default);
        Assert.Null(LabOptions.Parse(["demo", "--powa", "4"]).ArchivistRelease());
        foreach (var bad in new[] { "6", "4.1", "5.x", "5..3", "" })
            Assert.Contains("--powa takes 4, 5 or a PoWA 5 release", Assert.Throws<UsageException>(() => LabOptions.Parse(["demo", "--powa", bad])).Message);
        // The demo lives in powa-lab, not in the production executable.
        Assert.Contains("unknown command \"demo\"", Assert.Throws<UsageException>(() => CommandLine.Parse(["demo"])).Message);
    }

    [Fact]
    public void Cluster_options_on_the_command_line_and_in_settings()
    {
        var (s, _) = SettingsLoader.Load(Run("--repository", "host=h", "--cluster-host", "10.0.0.11", "--cluster-port", "4053",
            "--seed", "10.0.0.11:4053", "--seed", "10.0.0.12:4053", "--http-port", "8080"), Config(TlsFiles), []);
        Assert.Equal(("10.0.0.11", 4053, 8080), (s.ClusterHost, s.ClusterPort, s.HttpPort));
        Assert.Equal(["10.0.0.11:4053", "10.0.0.12:4053"], s.Seeds);
        Assert.False(s.IsOneNode);

        // The same from appsettings / environment variables (PowaCluster__Seeds__0, ...).
        var (e, _) = SettingsLoader.Load(Run("--repository", "host=h"), Config(
            ("PowaCluster:Seeds:0", "a:1"), ("PowaCluster:Seeds:1", "b:2"), ("PowaCluster:ClusterPort", "4053"),
            ("PowaCluster:HttpPort", "9090"), ("PowaCluster:StableAfter", "00:00:20"), ("PowaCluster:Discovery", "Seeds"),
            TlsFiles[0], TlsFiles[1], TlsFiles[2]), []);
        Assert.Equal(["a:1", "b:2"], e.Seeds);
        Assert.Equal((4053, 9090, TimeSpan.FromSeconds(20), "seeds"), (e.ClusterPort, e.HttpPort, e.StableAfter, e.Discovery));

        var k = new CollectorSettings { Discovery = "Kubernetes", ClusterHost = "0.0.0.0", ClusterPublicHost = "10.1.2.3", Tls = { Mode = "off" } };
        k.Validate();
        Assert.Equal(DiscoveryModes.Kubernetes, k.Discovery);
        Assert.False(k.IsOneNode);
        Assert.True(new CollectorSettings().IsOneNode);
    }

    [Fact]
    public void A_lone_node_off_loopback_needs_cluster_TLS_as_a_cluster_does()
    {
        foreach (var host in new[] { "127.0.0.1", "127.0.0.9", "localhost", "::1" })
        {
            var s = new CollectorSettings { ClusterHost = host };
            s.Validate();
            Assert.False(s.Tls.EnabledFor(s), host);
        }
        foreach (var host in new[] { "0.0.0.0", "::", "10.0.0.11", "collector.example.org" })
        {
            var e = Assert.Throws<ArgumentException>(() => new CollectorSettings { ClusterHost = host }.Validate());
            Assert.Contains($"ClusterHost {host} is not a loopback address", e.Message);
            Assert.Contains("set Tls:CertificatePath, Tls:KeyPath, Tls:CaPath", e.Message);
            // Said explicitly: allowed (and warned about at start).
            var off = new CollectorSettings { ClusterHost = host, Tls = { Mode = "off" } };
            off.Validate();
            Assert.False(off.Tls.EnabledFor(off));
        }
    }

    [Theory]
    [InlineData("PowaCluster:Discovery", "dns", "Discovery must be \"seeds\" or \"kubernetes\"")]
    [InlineData("PowaCluster:Seeds:0", "nocolon", "a seed is host:port, not \"nocolon\"")]
    [InlineData("PowaCluster:Seeds:0", "h:99999", "a seed is host:port")]
    [InlineData("PowaCluster:HttpPort", "0", "HttpPort must be from 1 to 65535")]
    [InlineData("PowaCluster:StableAfter", "00:00:00.5", "StableAfter must be at least 1 second")]
    [InlineData("PowaCluster:ClusterHost", "0.0.0.0", "set ClusterPublicHost")]
    public void Invalid_cluster_settings_are_one_clear_error(string key, string value, string expected)
    {
        var values = new List<(string, string)> { (key, value) };
        if (key == "PowaCluster:ClusterHost") values.Add(("PowaCluster:Seeds:0", "a:1"));
        var e = Assert.Throws<StartupException>(() => SettingsLoader.Load(Run("--repository", "host=h"), Config(values.ToArray()), []));
        Assert.Contains(expected, e.Message);
    }

    static readonly (string, string)[] TlsFiles =
    [
        ("PowaCluster:Tls:CertificatePath", "/etc/powa-cluster/tls/node.crt"), ("PowaCluster:Tls:KeyPath", "/etc/powa-cluster/tls/node.key"),
        ("PowaCluster:Tls:CaPath", "/etc/powa-cluster/tls/ca.crt"),
    ];

    [Fact]
    public void A_cluster_of_several_nodes_needs_its_TLS_files_unless_told_otherwise()
    {
        // One node: no TLS (it binds loopback), whatever the files.
        var one = new CollectorSettings();
        one.Validate();
        Assert.False(one.Tls.EnabledFor(one));
        // Seeds without the files: one line that says what to set, and how to go without.
        var e = Assert.Throws<StartupException>(() => SettingsLoader.Load(Run("--repository", "host=h", "--seed", "a:1"), Config(), []));
        Assert.Contains("mutual TLS: set Tls:CertificatePath, Tls:KeyPath, Tls:CaPath", e.Message);
        Assert.Contains("Tls:Mode off", e.Message);
        var partial = Assert.Throws<StartupException>(() => SettingsLoader.Load(Run("--repository", "host=h", "--seed", "a:1"),
            Config(("PowaCluster:Tls:CertificatePath", "/x.crt")), []));
        Assert.Contains("set Tls:KeyPath, Tls:CaPath", partial.Message);
        var (off, _) = SettingsLoader.Load(Run("--repository", "host=h", "--seed", "a:1"), Config(("PowaCluster:Tls:Mode", "OFF")), []);
        Assert.False(off.Tls.EnabledFor(off));
        var (on, _) = SettingsLoader.Load(Run("--repository", "host=h", "--seed", "a:1"), Config(TlsFiles), []);
        Assert.True(on.Tls.EnabledFor(on));
        Assert.Contains("Tls:Mode must be \"auto\", \"on\" or \"off\"", Assert.Throws<StartupException>(() =>
            SettingsLoader.Load(Run("--repository", "host=h"), Config(("PowaCluster:Tls:Mode", "maybe")), [])).Message);
        // On for one node too when asked.
        Assert.Contains("Tls:Mode is on", Assert.Throws<ArgumentException>(() => new CollectorSettings { Tls = { Mode = "on" } }.Validate()).Message);
    }

    [Fact]
    public void Kubernetes_discovery_excludes_seeds_and_needs_its_settings()
    {
        var both = new CollectorSettings { Discovery = "kubernetes", Seeds = ["a:1"] };
        Assert.Contains("exclude each other", Assert.Throws<ArgumentException>(both.Validate).Message);
        var noName = new CollectorSettings { Discovery = "kubernetes", Kubernetes = { ServiceName = " " } };
        Assert.Contains("Kubernetes:ServiceName", Assert.Throws<ArgumentException>(noName.Validate).Message);
    }

    [Fact]
    public void Demo_cluster_options()
    {
        var c = LabOptions.Parse(["demo", "--nodes", "3", "--failover", "--servers", "60"]);
        Assert.Equal((3, true, 60), (c.Nodes, c.Failover, c.Servers));
        Assert.Contains("--failover needs --nodes 3 or more", Assert.Throws<UsageException>(() => LabOptions.Parse(["demo", "--failover"])).Message);
        var bench = LabOptions.Parse(["bench", "--loads", "20,200", "--frozen", "30"]);
        Assert.Equal([20, 200], bench.Loads!);
        Assert.Equal((30, 20), (bench.FrozenSeconds, bench.Servers));
        Assert.Contains("unknown option \"--frozen\" for demo", Assert.Throws<UsageException>(() => LabOptions.Parse(["demo", "--frozen", "3"])).Message);
        Assert.Contains("unknown option \"--nodes\" for run", Assert.Throws<UsageException>(() => CommandLine.Parse(["run", "--nodes", "3"])).Message);
        Assert.Equal(8080, CommandLine.Parse(["run", "--http-port", "8080"]).HttpPort);
        var faults = LabOptions.Parse(["faults", "--only", "notify-flood,strangers", "--long-freeze", "600"]);
        Assert.Equal((10, 600), (faults.Servers, faults.LongFreezeSeconds));
        Assert.Equal(["notify-flood", "strangers"], faults.Only!);
        Assert.Contains("unknown fault \"earthquake\"", Assert.Throws<UsageException>(() => LabOptions.Parse(["faults", "--only", "earthquake"])).Message);
    }
}
