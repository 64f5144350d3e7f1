using System.Globalization;
using System.Text.Json;
using PowaCluster.Lab.Embedded;

namespace PowaCluster.Lab.Demo;

/// <summary>
/// powa-lab demo --nodes N --prometheus: a real Prometheus scrapes every node's /metrics while the demo runs;
/// at the end, promtool's verdict on a scrape, what the main series say per node, and the number of series
/// each PromQL expression of the Grafana dashboard (k8s/grafana-dashboard.json) returns.
/// </summary>
public static class PrometheusReport
{
    static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    public static async Task<int> PrintAsync(PrometheusServer prometheus, IReadOnlyList<ClusterNodes.Node> nodes)
    {
        var failures = 0;
        var scrape = await Http.GetStringAsync($"http://127.0.0.1:{nodes[0].HttpPort}/metrics");
        var (code, lint) = await PrometheusServer.CheckMetricsAsync(scrape);
        Console.WriteLine($"prometheus: promtool check metrics on node 1's /metrics ({scrape.Split('\n').Count(l => l.Length > 0 && l[0] != '#')} samples): " +
                          $"exit {code}{(lint.Length > 0 ? ", " + lint : ", no problem")}");
        if (code != 0) failures++;
        Console.WriteLine("prometheus: per node (instance)                     " + string.Join("  ", nodes.Select(n => $"127.0.0.1:{n.HttpPort}".PadLeft(16))));
        foreach (var (label, q, format) in new[]
        {
            ("servers (powa_servers)", "sum by (instance) (powa_servers)", "F0"),
            ("snapshots stored (powa_snapshots_total)", "sum by (instance) (powa_snapshots_total{outcome=\"stored\"})", "F0"),
            ("worst seconds since a server's last snapshot", "max by (instance) (powa_server_last_snapshot_age_seconds)", "F1"),
            ("store p95 s (powa_snapshot_duration_seconds)", "histogram_quantile(0.95, sum by (le, instance) (rate(powa_snapshot_duration_seconds_bucket{phase=\"store\"}[5m])))", "F3"),
            ("read p95 s", "histogram_quantile(0.95, sum by (le, instance) (rate(powa_snapshot_duration_seconds_bucket{phase=\"read\"}[5m])))", "F3"),
            ("writer queue wait p95 s", "histogram_quantile(0.95, sum by (le, instance) (rate(powa_writer_queue_wait_seconds_bucket[5m])))", "F3"),
            ("cluster members up", "sum by (instance) (powa_cluster_members{status=\"up\"})", "F0"),
            ("process CPU, cores", "sum by (instance) (rate(dotnet_process_cpu_time_seconds_total[5m]))", "F3"),
            ("working set MB", "sum by (instance) (dotnet_process_memory_working_set_bytes) / 1e6", "F0"),
        })
        {
            var rows = (await prometheus.QueryAsync(q)).ToDictionary(r => r.Labels.GetValueOrDefault("instance", ""), r => r.Value);
            Console.WriteLine($"prometheus:   {label,-48}" + string.Join("  ", nodes.Select(n =>
                (rows.TryGetValue($"127.0.0.1:{n.HttpPort}", out var v) && double.TryParse(v, CultureInfo.InvariantCulture, out var d)
                    ? d.ToString(format, CultureInfo.InvariantCulture) : "-").PadLeft(16))));
        }
        var dashboard = FindDashboard();
        using var doc = JsonDocument.Parse(await File.ReadAllTextAsync(dashboard));
        foreach (var panel in doc.RootElement.GetProperty("panels").EnumerateArray())
            foreach (var target in panel.GetProperty("targets").EnumerateArray())
            {
                var expr = target.GetProperty("expr").GetString()!;
                var n = (await prometheus.QueryAsync(expr)).Count;
                if (n == 0) failures++;
                Console.WriteLine($"prometheus: dashboard {n,4} series  {expr}");
            }
        Console.WriteLine(failures == 0 ? "prometheus: every dashboard expression returned series; promtool found nothing"
            : $"prometheus: {failures} problem(s) above");
        return failures;
    }

    static string FindDashboard()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            var f = Path.Combine(d.FullName, "k8s", "grafana-dashboard.json");
            if (File.Exists(f)) return f;
        }
        throw new FileNotFoundException("k8s/grafana-dashboard.json not found above " + AppContext.BaseDirectory);
    }
}
