using System.Collections.Concurrent;
using System.Net;
using System.Text;
using System.Text.Json;
using PowaCluster.Lab.Embedded;
using PowaCluster.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace PowaCluster.Tests.Integration;

/// <summary>
/// The node's metrics as a monitoring system gets them: /metrics checked by promtool and scraped by a real
/// Prometheus (Debian's package), every PromQL expression of the Grafana dashboard answered with series, and
/// the same instruments pushed over OTLP (http/protobuf) to a small receiver.
/// </summary>
[Collection(LabCollection.Name)]
public sealed class MetricsTests(LabFixture fx, ITestOutputHelper output)
{
    static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    /// <summary>The instruments the issue asks for, as Prometheus names them.</summary>
    static readonly string[] Series =
    [
        "powa_snapshots_total", "powa_snapshot_duration_seconds_bucket", "powa_datasource_read_duration_seconds_bucket",
        "powa_datasource_size_bytes_bucket", "powa_server_last_snapshot_age_seconds", "powa_writer_queue_wait_seconds_bucket",
        "powa_writer_queue_depth", "powa_repository_transactions", "powa_servers", "powa_cluster_members",
        "powa_remote_connect_failures_total", "powa_notify_requests_total",
        "dotnet_process_cpu_time_seconds_total", "dotnet_process_memory_working_set_bytes", "dotnet_gc_collections_total",
    ];

    [Fact]
    public async Task Prometheus_scrapes_every_series_the_dashboard_queries_and_OTLP_gets_them_too()
    {
        Assert.True(PrometheusServer.Installed, "prometheus and promtool are installed (scripts/install-deps.sh)");
        var repo = await fx.NewRepositoryAsync();
        await repo.RegisterAsync(fx.Lab.Remotes[0], 37, "metrics-a");
        await repo.RegisterAsync(fx.Lab.Remotes[1], 38, "metrics-b");
        // One that cannot connect: the connection failures' series.
        await repo.RegisterAsync(fx.Lab.Remotes[1], 39, "metrics-denied", password: "wrong-metrics-pw");
        await using var otlp = await OtlpReceiver.StartAsync();
        var port = ClusterTests.FreePorts(1)[0];
        var s = CollectorNode.FastSettings();
        s.HttpPort = port;
        s.HttpHost = "127.0.0.1";
        await using var node = await CollectorNode.StartAsync(repo, s, configuration: new Dictionary<string, string?>
        {
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = $"http://127.0.0.1:{otlp.Port}",
            ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf",
            ["OTEL_METRIC_EXPORT_INTERVAL"] = "1000",
        });
        // A NOTIFY answered (powa-web's WORKERS_STATUS): the NOTIFY series.
        await using (var web = await PowaWebClient.ConnectAsync(repo.ConnectionString))
            await web.WaitForCollectorAsync();
        await using var prometheus = await PrometheusServer.StartAsync([$"127.0.0.1:{port}"]);

        string scrape = "";
        await Eventually.HoldsAsync(async () =>
        {
            scrape = await Http.GetStringAsync($"http://127.0.0.1:{port}/metrics");
            return Series.All(scrape.Contains) && scrape.Contains("outcome=\"stored\"");
        }, TimeSpan.FromSeconds(40), "every series on /metrics, and a stored snapshot");
        var (code, lint) = await PrometheusServer.CheckMetricsAsync(scrape);
        output.WriteLine($"promtool check metrics: exit {code}{(lint.Length > 0 ? ": " + lint : "")}");
        Assert.Equal(0, code);
        // Per-server series carry srvid and alias, never an error text.
        Assert.Matches(@"powa_server_last_snapshot_age_seconds\{[^}]*alias=""metrics-a""[^}]*srvid=""\d+""", scrape);
        Assert.DoesNotContain("password", scrape);

        // Every expression of the dashboard, through Prometheus' API, returns series.
        var dashboard = JsonDocument.Parse(await File.ReadAllTextAsync(Path.Combine(RepoRoot.Path, "k8s", "grafana-dashboard.json")));
        var exprs = dashboard.RootElement.GetProperty("panels").EnumerateArray()
            .SelectMany(p => p.GetProperty("targets").EnumerateArray()).Select(t => t.GetProperty("expr").GetString()!).ToList();
        Assert.True(exprs.Count >= 12);
        await Eventually.HoldsAsync(async () => (await prometheus.QueryAsync("powa_snapshots_total")).Count > 0
                                                && (await prometheus.QueryAsync("count_over_time(powa_servers[1m])")).Any(r => double.Parse(r.Value) >= 5),
            TimeSpan.FromSeconds(40), "Prometheus has scraped the node a few times");
        foreach (var e in exprs)
        {
            var result = await prometheus.QueryAsync(e);
            output.WriteLine($"{result.Count,3} series  {e}");
            Assert.True(result.Count > 0, $"no series for the dashboard's {e}");
        }
        // The node's 3 servers, one series each (actor tests running beside this one may add others to the process).
        Assert.Equal("3", (await prometheus.QueryAsync("count(powa_server_last_snapshot_age_seconds{alias=~\"metrics-.*\"})")).Single().Value);
        Assert.Equal("1", (await prometheus.QueryAsync("sum(powa_cluster_members{status=\"up\"})")).Single().Value);

        // OTLP: the same instruments pushed to the receiver (their names are in the protobuf payloads).
        await Eventually.HoldsAsync(() => Task.FromResult(new[] { "powa.snapshots", "powa.writer.queue.wait", "powa.server.last_snapshot.age",
            "powa.servers", "dotnet.process.cpu.time" }.All(otlp.Received.Contains)), TimeSpan.FromSeconds(20), "the instruments over OTLP");
        Assert.Equal("application/x-protobuf", otlp.ContentType);
    }

    /// <summary>
    /// A small OTLP/HTTP receiver: accepts POST /v1/metrics (http/protobuf) and keeps the payloads' text, in
    /// which the instruments' names appear as they are (protobuf strings are UTF-8).
    /// </summary>
    sealed class OtlpReceiver : IAsyncDisposable
    {
        readonly HttpListener _listener = new();
        readonly ConcurrentQueue<string> _payloads = new();
        Task _loop = Task.CompletedTask;
        public int Port { get; private init; }
        public string? ContentType { get; private set; }
        public string Received => string.Join("\n", _payloads);

        public static Task<OtlpReceiver> StartAsync()
        {
            var port = ClusterTests.FreePorts(1)[0];
            var r = new OtlpReceiver { Port = port };
            r._listener.Prefixes.Add($"http://127.0.0.1:{port}/");
            r._listener.Start();
            r._loop = Task.Run(r.LoopAsync);
            return Task.FromResult(r);
        }

        async Task LoopAsync()
        {
            while (_listener.IsListening)
            {
                HttpListenerContext ctx;
                try { ctx = await _listener.GetContextAsync(); }
                catch (Exception e) when (e is HttpListenerException or ObjectDisposedException) { return; }
                using var ms = new MemoryStream();
                await ctx.Request.InputStream.CopyToAsync(ms);
                if (ctx.Request.Url?.AbsolutePath == "/v1/metrics")
                {
                    ContentType = ctx.Request.ContentType;
                    _payloads.Enqueue(Encoding.UTF8.GetString(ms.ToArray()));
                }
                ctx.Response.StatusCode = 200;
                ctx.Response.ContentType = "application/x-protobuf";
                ctx.Response.Close();
            }
        }

        public async ValueTask DisposeAsync()
        {
            _listener.Stop();
            _listener.Close();
            await _loop;
        }
    }
}
