using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using PowaCluster.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace PowaCluster.Tests.Integration;

/// <summary>
/// powa-cluster as an operator meets it: `check` on a good and a broken set-up, and the log of `run` in both
/// formats (real processes).
/// </summary>
[Collection(LabCollection.Name)]
public sealed partial class OperabilityTests(LabFixture fx, ITestOutputHelper output)
{
    [Fact]
    public async Task Check_passes_on_a_good_setup_and_names_each_problem()
    {
        var repo = await fx.NewRepositoryAsync();
        var remote = fx.Lab.Remotes[0];
        await repo.RegisterAsync(remote, 32, "check-good");
        var dsn = repo.ConnectionString.ConnectionString;
        var metasBefore = await repo.ListAsync<string>("SELECT srvid || ' ' || snapts::text || coalesce(errors::text, '') FROM powa_snapshot_metas ORDER BY srvid");

        var good = await StartupErrorTests.RunAsync("check", "--repository", dsn);
        output.WriteLine(good.Stdout + good.Stderr);
        Assert.Equal(0, good.Code);
        Assert.Matches(@"repository connection\s+ok", good.Stdout);
        Assert.Matches(@"repository powa\s+ok\s+powa 4\.", good.Stdout);
        Assert.Matches(@"repository privileges\s+ok", good.Stdout);
        Assert.Matches(@"staging tables vacuum\s+ok\s+every 10 s, all \d+ \*_src_tmp tables", good.Stdout);
        Assert.Matches(@"server \d+ \(check-good\) 127\.0\.0\.32:\d+\s+ok\s+PostgreSQL 15\.\d+.*; .*pg_stat_statements", good.Stdout);
        Assert.Contains("check: everything the collector needs is there", good.Stdout);

        // A remote database without powa, one without pg_qualstats (which the repository has registered for it).
        var noPowa = await repo.RegisterAsync(remote, 33, "check-nopowa", dbname: "postgres");
        var noQual = await repo.RegisterAsync(remote, 34, "check-noqual", dbname: LabFixture.NoQualstatsDb);
        Assert.Contains("pg_qualstats", await repo.ListAsync<string>(
            "SELECT extname FROM powa_extensions WHERE srvid = $1", noQual));
        var broken = await StartupErrorTests.RunAsync("check", "--repository", dsn);
        output.WriteLine(broken.Stdout + broken.Stderr);
        Assert.Equal(1, broken.Code);
        Assert.Matches(@"server \d+ \(check-good\) \S+\s+ok", broken.Stdout);
        Assert.Matches($@"server {noPowa} \(check-nopowa\) \S+\s+FAILED\s+the powa extension is not installed in database ""postgres""", broken.Stdout);
        Assert.Matches($@"server {noQual} \(check-noqual\) \S+\s+FAILED\s+registered in the repository but not installed here: pg_qualstats", broken.Stdout);
        Assert.Contains("check: 2 of ", broken.Stdout);

        // A wrong repository password: said, and the password is not.
        var wrong = new Npgsql.NpgsqlConnectionStringBuilder(dsn) { Password = "not-the-password-42" };
        var denied = await StartupErrorTests.RunAsync("check", "--repository", wrong.ConnectionString);
        output.WriteLine(denied.Stdout + denied.Stderr);
        Assert.Equal(1, denied.Code);
        Assert.Matches(@"repository connection\s+FAILED\s+.*password authentication failed", denied.Stdout);
        Assert.DoesNotContain("not-the-password-42", denied.Stdout + denied.Stderr);
        Assert.DoesNotContain(remote.Password, good.Stdout + broken.Stdout + denied.Stdout);

        // A repository role that may read powa_servers but not store snapshots: each missing privilege named.
        await repo.ExecAsync("DROP ROLE IF EXISTS check_limited; CREATE ROLE check_limited LOGIN PASSWORD 'limited-pw-5'; " +
                             "GRANT SELECT ON powa_servers, powa_snapshot_metas, powa_extensions TO check_limited; " +
                             "REVOKE EXECUTE ON FUNCTION powa_take_snapshot(integer) FROM PUBLIC");
        var limited = new Npgsql.NpgsqlConnectionStringBuilder(dsn) { Username = "check_limited", Password = "limited-pw-5" };
        var refused = await StartupErrorTests.RunAsync("check", "--repository", limited.ConnectionString);
        output.WriteLine(refused.Stdout + refused.Stderr);
        Assert.Equal(1, refused.Code);
        var privileges = refused.Stdout.Split('\n').Single(l => l.StartsWith("repository privileges"));
        Assert.Matches(@"FAILED\s+check_limited lacks ", privileges);
        // Not their owner: said, not a failure (they are left to autovacuum).
        Assert.Matches(@"staging tables vacuum\s+ok\s+check_limited may not vacuum \d+ of the \d+ \*_src_tmp tables", refused.Stdout);
        Assert.Contains("UPDATE on public.powa_snapshot_metas", privileges);
        Assert.Contains("EXECUTE on public.powa_take_snapshot(integer)", privileges);
        Assert.Matches(@"DELETE, INSERT on [^;]*powa_statements_src_tmp", privileges);
        Assert.DoesNotContain("SELECT on public.powa_servers", privileges);
        Assert.DoesNotContain("limited-pw-5", refused.Stdout + refused.Stderr);

        // Nothing was written: the servers' snapshot rows are as they were.
        var metasAfter = await repo.ListAsync<string>("SELECT srvid || ' ' || snapts::text || coalesce(errors::text, '') FROM powa_snapshot_metas " +
            "WHERE srvid <> ALL($1) ORDER BY srvid", new[] { noPowa, noQual });
        Assert.Equal(metasBefore, metasAfter);
    }

    [Fact]
    public async Task Run_logs_one_line_per_event_in_plain_and_json_without_a_password()
    {
        var repo = await fx.NewRepositoryAsync();
        var remote = fx.Lab.Remotes[1];
        var srvid = await repo.RegisterAsync(remote, 35, "log-alias");
        // A server whose password is wrong: its connection failure is logged, its password must not be.
        var denied = await repo.RegisterAsync(remote, 36, "log-denied", password: "wrong-remote-pw-77");
        var dsn = repo.ConnectionString.ConnectionString;

        // Until both servers' events are logged: the one connected and the one refused.
        bool Logged(string log) => log.Contains($"Server {srvid}: connected to") && log.Contains("password authentication failed");
        var none = new Dictionary<string, string>();
        var plain = await RunUntilAsync(Logged, TimeSpan.FromSeconds(60), none, "run", "--repository", dsn);
        var json = await RunUntilAsync(Logged, TimeSpan.FromSeconds(60), none, "run", "--repository", dsn, "--log-format", "json");
        output.WriteLine(plain);
        output.WriteLine(json);
        foreach (var text in new[] { plain, json })
        {
            Assert.DoesNotContain(repo.ConnectionString.Password!, text);
            Assert.DoesNotContain(remote.Password, text);
            Assert.DoesNotContain("wrong-remote-pw-77", text);
        }

        var lines = plain.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length >= 3, "the node logged its start");
        foreach (var line in lines)
        {
            Assert.Matches(PlainLine(), line);
            // One timestamp and one level: no second date, no level in brackets (Akka's own format).
            Assert.Single(Timestamp().Matches(line));
            Assert.DoesNotMatch(@"\[(INFO|WARNING|ERROR|DEBUG)\]", line);
        }
        Assert.Contains(lines, l => l.Contains($"[srvid={srvid} alias=log-alias] Server {srvid}: connected to"));
        Assert.Contains(lines, l => l.Contains($"WARN  [srvid={denied} alias=log-denied]") && l.Contains("password authentication failed"));

        var events = json.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();
        Assert.True(events.Count >= 3);
        Assert.All(events, e =>
        {
            Assert.True(DateTime.TryParse(e.GetProperty("time").GetString(), out _));
            Assert.Contains(e.GetProperty("level").GetString(), new[] { "debug", "info", "warn", "error", "fatal" });
            Assert.False(string.IsNullOrEmpty(e.GetProperty("message").GetString()));
        });
        Assert.Contains(events, e => e.TryGetProperty("srvid", out var id) && id.GetInt32() == srvid
                                     && e.GetProperty("alias").GetString() == "log-alias"
                                     && e.GetProperty("message").GetString()!.StartsWith($"Server {srvid}: connected to"));
    }

    [GeneratedRegex(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (TRACE|DEBUG|INFO |WARN |ERROR|FATAL) \[[^\]]+\] \S")]
    private static partial Regex PlainLine();

    [GeneratedRegex(@"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d|\d\d/\d\d/\d{4} \d\d:\d\d")]
    private static partial Regex Timestamp();

    [Fact]
    public async Task An_OTLP_endpoint_that_refuses_is_a_warning_in_the_log_not_silence()
    {
        var repo = await fx.NewRepositoryAsync();
        await repo.RegisterAsync(fx.Lab.Remotes[0], 35, "otlp-down");
        var closed = ClusterTests.FreePorts(1)[0]; // nothing listens there
        // Until the warning is out, and for 3 s more (3 more exports at 1 s): it must not be said again.
        DateTime? seen = null;
        var log = await RunUntilAsync(text =>
        {
            if (!text.Contains("OTLP metrics export failed")) return false;
            seen ??= DateTime.UtcNow;
            return DateTime.UtcNow - seen > TimeSpan.FromSeconds(3);
        }, TimeSpan.FromSeconds(60), new Dictionary<string, string>
        {
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = $"http://127.0.0.1:{closed}",
            ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf",
            ["OTEL_METRIC_EXPORT_INTERVAL"] = "1000",
        }, "run", "--repository", repo.ConnectionString.ConnectionString);
        output.WriteLine(log);
        var warnings = log.Split('\n').Where(l => l.Contains("OTLP metrics export failed")).ToList();
        // Said, in the node's format, and not once a second: the same failure again within a minute is counted.
        Assert.Single(warnings);
        Assert.Matches(@"^\S+Z WARN  \[PowaCluster\.Host\.Startup\.OtlpExportLog\] OTLP metrics export failed: .*127\.0\.0\.1:" + closed, warnings[0]);
    }

    /// <summary>
    /// Runs powa-cluster until its standard output satisfies <paramref name="done"/> (or <paramref name="timeout"/>
    /// passed), then SIGTERM; its standard output (stderr must be empty). A condition, not a duration: a node
    /// slowed by tests running beside it still gets to log what the test reads.
    /// </summary>
    static async Task<string> RunUntilAsync(Func<string, bool> done, TimeSpan timeout, IReadOnlyDictionary<string, string> env, params string[] args)
    {
        using var p = StartupErrorTests.Start(env, args);
        var stdout = new System.Text.StringBuilder();
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (stdout) stdout.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        var stderr = p.StandardError.ReadToEndAsync();
        string Text() { lock (stdout) return stdout.ToString(); }
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline && !p.HasExited && !done(Text())) await Task.Delay(200);
        // Not before its first line: a SIGTERM that comes before the host handles it ends the process with 143
        // (seen on a loaded machine after a fixed 10 s).
        var started = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (DateTime.UtcNow < started && !p.HasExited && Text().Length == 0) await Task.Delay(200);
        using (var kill = Process.Start("kill", ["-TERM", p.Id.ToString()])) await kill.WaitForExitAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await p.WaitForExitAsync(cts.Token);
        var errors = (await stderr).Trim();
        Assert.True(errors == "", $"standard error: {errors}");
        Assert.Equal(0, p.ExitCode);
        return Text();
    }
}
