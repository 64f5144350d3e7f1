using Npgsql;
using PowaCluster.Collector.Configuration;
using Xunit;

namespace PowaCluster.Tests.Unit;

public sealed class DsnTests
{
    [Fact]
    public void Libpq_uri_with_every_part()
    {
        var b = Dsn.Parse("postgresql://powa%40corp:p%3Ass@db.example:6432/powa_repo?sslmode=require&application_name=x&connect_timeout=7");
        Assert.Equal("powa@corp", b.Username);
        Assert.Equal("p:ss", b.Password);
        Assert.Equal("db.example", b.Host);
        Assert.Equal(6432, b.Port);
        Assert.Equal("powa_repo", b.Database);
        Assert.Equal(SslMode.Require, b.SslMode);
        Assert.Equal("x", b.ApplicationName);
        Assert.Equal(7, b.Timeout);
    }

    [Fact]
    public void Short_uri_keeps_libpq_defaults_and_takes_ipv6()
    {
        var b = Dsn.Parse("postgres://[::1]/powa");
        Assert.Equal("::1", b.Host);
        Assert.Equal(5432, b.Port);
        Assert.Equal("powa", b.Database);
        Assert.Null(b.Password);
    }

    [Fact]
    public void Uri_with_several_hosts()
    {
        var b = Dsn.Parse("postgresql://u@h1:5433,h2:5434/powa");
        Assert.Equal("h1:5433,h2:5434", b.Host);
    }

    [Fact]
    public void Libpq_key_value_with_quoting_and_escapes()
    {
        var b = Dsn.Parse("host=127.0.0.1 port = 5433 dbname=powa user=powa password='with spaces' sslmode=disable");
        Assert.Equal("127.0.0.1", b.Host);
        Assert.Equal(5433, b.Port);
        Assert.Equal("powa", b.Database);
        Assert.Equal("with spaces", b.Password);
        Assert.Equal(SslMode.Disable, b.SslMode);
        var c = Dsn.Parse(@"host=h password='a \'b\' c'");
        Assert.Equal("a 'b' c", c.Password);
    }

    [Fact]
    public void Key_value_without_host_uses_pghost_or_the_local_socket()
    {
        var b = Dsn.Parse("dbname=powa");
        Assert.False(string.IsNullOrEmpty(b.Host));
    }

    [Fact]
    public void Npgsql_connection_string()
    {
        var b = Dsn.Parse("Host=10.0.0.1;Port=5434;Database=powa;Username=u;Password=secret");
        Assert.Equal("10.0.0.1", b.Host);
        Assert.Equal(5434, b.Port);
        Assert.Equal("u", b.Username);
        Assert.Equal("secret", b.Password);
        Assert.Equal("h", Dsn.Parse("Host=h").Host);
    }

    [Theory]
    [InlineData("", "empty")]
    [InlineData("host=h bogus=1", "unknown connection parameter \"bogus\"")]
    [InlineData("host=h port=abc", "\"port\" must be a number")]
    [InlineData("host=h password='unterminated", "unterminated quoted value for \"password\"")]
    [InlineData("host h", "missing \"=\" after \"host\"")]
    [InlineData("postgresql://u@h/db?sslmode=sometimes", "invalid sslmode \"sometimes\"")]
    [InlineData("postgresql://u@h/db?novalue", "has no value")]
    public void Invalid_dsn_says_what_is_wrong(string dsn, string expected)
    {
        var e = Assert.Throws<DsnException>(() => Dsn.Parse(dsn));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Errors_and_descriptions_never_contain_the_password()
    {
        var e = Assert.Throws<DsnException>(() => Dsn.Parse("host=h password=TopSecret99 port=notaport"));
        Assert.DoesNotContain("TopSecret99", e.Message);
        var e2 = Assert.Throws<DsnException>(() => Dsn.Parse("Host=h;Password=TopSecret99;Port=notaport"));
        Assert.DoesNotContain("TopSecret99", e2.Message);
        Assert.Equal("h:5432/powa user=u", Dsn.Describe(Dsn.Parse("postgresql://u:TopSecret99@h/powa")));
    }

    [Fact]
    public void Server_config_prints_no_password()
    {
        var cfg = new ServerConfig(3, "127.0.0.1", 5432, "powa", "TopSecret99", "powa", 300, "a");
        Assert.DoesNotContain("TopSecret99", cfg.ToString());
        Assert.Contains("Password = ***", cfg.ToString());
        // A NULL password is left to the passfile, as libpq does.
        Assert.Null((cfg with { Password = null }).ToConnectionString(new CollectorSettings()).Password);
    }

    [Fact]
    public void A_libpq_DSN_that_looks_like_an_Npgsql_one_never_shows_its_password()
    {
        foreach (var dsn in new[] { "Host=h password=Sekr3t dbname=powa", "host=h password=Sek;r3t dbname=powa", "host=h password='a;b' Port=5432" })
        {
            string said;
            try { said = Dsn.Describe(Dsn.Parse(dsn)); }
            catch (DsnException e) { said = e.Message; }
            Assert.DoesNotContain("Sek", said);
            Assert.DoesNotContain("a;b", said);
        }
        Assert.Equal("h:5432/powa user=u", Dsn.Describe(Dsn.Parse("host=h password=Sek;r3t dbname=powa user=u")));
        Assert.Equal("h:5432/powa user=u", Dsn.Describe(Dsn.Parse("Host=h;Database=powa;Username=u;Password=x")));
    }

    [Fact]
    public void Connection_changes_are_told_apart_from_frequency_changes()
    {
        var cfg = new ServerConfig(3, "127.0.0.1", 5432, "powa", null, "powa", 300, "a");
        Assert.True(cfg.ConnectionDiffers(cfg with { Port = 5433 }));
        Assert.True(cfg.ConnectionDiffers(cfg with { Password = "x" }));
        Assert.False(cfg.ConnectionDiffers(cfg with { Frequency = 60, Alias = "b" }));
    }

    [Fact]
    public void Rows_that_are_not_one_remote_server_are_refused_with_the_reason()
    {
        var ok = new ServerConfig(3, "db1.example", 5432, "powa", null, "powa", 300, new string('a', 10_000));
        Assert.Null(ok.Problem());
        Assert.Null((ok with { Hostname = "10.0.0.5" }).Problem());
        Assert.Null((ok with { Hostname = "::1" }).Problem());
        Assert.Null((ok with { Hostname = "hôte.example", Username = "po'st\"gres;x=1" }).Problem());
        Assert.Contains("is a socket path", (ok with { Hostname = "/var/run/postgresql" }).Problem());
        Assert.Contains("is not one host name or address", (ok with { Hostname = "a,b" }).Problem());
        Assert.Contains("is not one host name or address", (ok with { Hostname = "a;Host=b" }).Problem());
        Assert.Contains("is not one host name or address", (ok with { Hostname = "a\nb" }).Problem());
        Assert.Contains("is empty", (ok with { Hostname = " " }).Problem());
        Assert.Contains("is not a TCP port", (ok with { Port = 0 }).Problem());
        // Loopback is each node's own host: fine while the nodes are on loopback (the lab), refused otherwise.
        foreach (var loopback in new[] { "127.0.0.1", "127.3.2.1", "localhost", "LOCALHOST", "db.localhost", "::1", "[::1]" })
        {
            Assert.Null((ok with { Hostname = loopback }).Problem(nodesOnLoopback: true));
            Assert.Contains("is a loopback address", (ok with { Hostname = loopback }).Problem(nodesOnLoopback: false));
        }
        Assert.Null((ok with { Hostname = "10.0.0.5" }).Problem(nodesOnLoopback: false));
        Assert.Null((ok with { Hostname = "localhost.example" }).Problem(nodesOnLoopback: false));
        Assert.Contains("is more than a timer can wait", (ok with { Frequency = 4_294_968 }).Problem());
        Assert.Null((ok with { Frequency = ServerConfig.MaxFrequency }).Problem());
        // A remote's error text is one line, no escape sequence, 1,000 characters at most.
        var text = Collector.Postgres.PgSession.Describe(new Exception("\u001b[31mred\nINJECTED " + new string('x', 5000)));
        Assert.DoesNotContain('\u001b', text);
        Assert.DoesNotContain('\n', text);
        Assert.Equal(1000, text.Length);
        // A long or multi-line value is shown on one line, cut.
        var shown = ServerConfig.Shown(new string('x', 500) + "\nINJECTED");
        Assert.Equal(100, shown.Length);
        Assert.DoesNotContain("\n", shown);
    }

    [Fact]
    public void Remote_TLS_and_authentication_settings()
    {
        var s = new CollectorSettings { RemoteSslMode = "require", RemoteRequireAuth = "scram-sha-256" };
        s.Validate();
        var csb = new ServerConfig(3, "db1", 5432, "powa", "x", "powa", 300, null).ToConnectionString(s);
        Assert.Equal(Npgsql.SslMode.Require, csb.SslMode);
        Assert.Equal("ScramSHA256", csb.RequireAuth);
        Assert.Equal(Npgsql.SslMode.Prefer, new ServerConfig(3, "db1", 5432, "powa", "x", "powa", 300, null).ToConnectionString(new CollectorSettings()).SslMode);
        Assert.Contains("set RemoteSslRootCert", Assert.Throws<ArgumentException>(() => new CollectorSettings { RemoteSslMode = "verify-full" }.Validate()).Message);
        Assert.Contains("RemoteSslRootCert: no file /nope.crt", Assert.Throws<ArgumentException>(() =>
            new CollectorSettings { RemoteSslMode = "verify-ca", RemoteSslRootCert = "/nope.crt" }.Validate()).Message);
        Assert.Contains("RemoteSslMode: invalid sslmode \"sometimes\"", Assert.Throws<ArgumentException>(() => new CollectorSettings { RemoteSslMode = "sometimes" }.Validate()).Message);
        Assert.Contains("invalid require_auth method \"kerberos\"", Assert.Throws<ArgumentException>(() => new CollectorSettings { RemoteRequireAuth = "kerberos" }.Validate()).Message);
        // The repository's DSN says the same with libpq's own parameters.
        var repo = Dsn.Parse("postgresql://powa@repo/powa?sslmode=verify-full&sslrootcert=/etc/ca.crt&require_auth=scram-sha-256");
        Assert.Equal((Npgsql.SslMode.VerifyFull, "/etc/ca.crt", "ScramSHA256"), (repo.SslMode, repo.RootCertificate, repo.RequireAuth));
        Assert.Equal("Password,ScramSHA256", Dsn.ParseRequireAuth("password, scram-sha-256"));
    }
}
