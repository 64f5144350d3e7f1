using System.Diagnostics;
using System.Text.Json;

namespace PowaCluster.Lab.Embedded;

/// <summary>
/// A throwaway Prometheus server (Debian's prometheus package) on a free loopback port, scraping the given
/// targets every second into a temporary directory; queried through its HTTP API. Stopped and deleted on
/// dispose. Also runs promtool on a scrape.
/// </summary>
public sealed class PrometheusServer : IAsyncDisposable
{
    public const string Binary = "/usr/bin/prometheus";
    public const string Promtool = "/usr/bin/promtool";
    static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };
    readonly Process _process;
    readonly string _dir;
    public int Port { get; }
    public string Log => Path.Combine(_dir, "prometheus.log");

    PrometheusServer(Process process, string dir, int port) => (_process, _dir, Port) = (process, dir, port);

    public static bool Installed => File.Exists(Binary) && File.Exists(Promtool);

    /// <param name="targets">host:port of each /metrics endpoint</param>
    public static async Task<PrometheusServer> StartAsync(IEnumerable<string> targets, TimeSpan? scrapeInterval = null)
    {
        if (!Installed) throw new InvalidOperationException($"{Binary} is not installed (Debian package prometheus; scripts/install-deps.sh installs it)");
        var dir = Directory.CreateTempSubdirectory("powa-prometheus-").FullName;
        var interval = $"{(int)(scrapeInterval ?? TimeSpan.FromSeconds(1)).TotalMilliseconds}ms";
        await File.WriteAllTextAsync(Path.Combine(dir, "prometheus.yml"), $"""
            global:
              scrape_interval: {interval}
              evaluation_interval: {interval}
            scrape_configs:
              - job_name: powa-cluster
                static_configs:
                  - targets: [{string.Join(", ", targets.Select(t => $"'{t}'"))}]
            """);
        var port = Demo.ClusterNodes.FreePorts(1)[0];
        var psi = new ProcessStartInfo(Binary) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in new[] { $"--config.file={dir}/prometheus.yml", $"--storage.tsdb.path={dir}/data", $"--web.listen-address=127.0.0.1:{port}" })
            psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        var log = new StreamWriter(Path.Combine(dir, "prometheus.log")) { AutoFlush = true };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.WriteLine(e.Data); };
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.WriteLine(e.Data); };
        p.BeginErrorReadLine();
        p.BeginOutputReadLine();
        var server = new PrometheusServer(p, dir, port);
        var deadline = LabClock.Utc.AddSeconds(30);
        while (true)
        {
            try
            {
                using var r = await Http.GetAsync($"http://127.0.0.1:{port}/-/ready");
                if (r.IsSuccessStatusCode) return server;
            }
            catch (HttpRequestException) { }
            if (p.HasExited || LabClock.Utc > deadline)
            {
                await server.DisposeAsync();
                throw new InvalidOperationException($"prometheus did not start (exit {(p.HasExited ? p.ExitCode : -1)})");
            }
            await Task.Delay(200);
        }
    }

    /// <summary>An instant query: the result's series (each its labels and value); throws on a query error.</summary>
    public async Task<IReadOnlyList<(IReadOnlyDictionary<string, string> Labels, string Value)>> QueryAsync(string promql)
    {
        using var r = await Http.GetAsync($"http://127.0.0.1:{Port}/api/v1/query?query={Uri.EscapeDataString(promql)}");
        var body = await r.Content.ReadAsStringAsync();
        using var doc = JsonDocument.Parse(body);
        var root = doc.RootElement;
        if (root.GetProperty("status").GetString() != "success")
            throw new InvalidOperationException($"query {promql}: {root.GetProperty("error").GetString()}");
        var data = root.GetProperty("data");
        var list = new List<(IReadOnlyDictionary<string, string>, string)>();
        if (data.GetProperty("resultType").GetString() is "scalar")
            return [(new Dictionary<string, string>(), data.GetProperty("result")[1].GetString()!)];
        foreach (var s in data.GetProperty("result").EnumerateArray())
        {
            var labels = s.GetProperty("metric").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString() ?? "");
            list.Add((labels, s.GetProperty("value")[1].GetString()!));
        }
        return list;
    }

    /// <summary>promtool check metrics on a scrape: its exit code and what it printed (lint problems).</summary>
    public static async Task<(int Code, string Output)> CheckMetricsAsync(string exposition)
    {
        var psi = new ProcessStartInfo(Promtool) { UseShellExecute = false, RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add("check");
        psi.ArgumentList.Add("metrics");
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.StandardInput.WriteAsync(exposition);
        p.StandardInput.Close();
        await p.WaitForExitAsync();
        return (p.ExitCode, ((await stdout) + (await stderr)).Trim());
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill();
                await _process.WaitForExitAsync();
            }
        }
        catch (InvalidOperationException) { }
        _process.Dispose();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
