using PowaCluster.Lab.Demo;

namespace PowaCluster.Lab.Bench;

/// <summary>
/// powa-cluster run serving /metrics (--http-port), with a scraper that GETs it every <see cref="Every"/>
/// as a Prometheus would: the bench's row for the cost of the metrics, beside the run without HTTP (no
/// exporter at all).
/// </summary>
sealed class ScrapedCollector : IDemoCollector
{
    public static readonly TimeSpan Every = TimeSpan.FromSeconds(15);
    static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };
    readonly IDemoCollector _inner;
    readonly CancellationTokenSource _stop = new();
    readonly Task _scraper;
    public int Scrapes { get; private set; }
    public long LastScrapeBytes { get; private set; }

    ScrapedCollector(IDemoCollector inner, int port)
    {
        _inner = inner;
        _scraper = Task.Run(async () =>
        {
            while (!_stop.IsCancellationRequested)
            {
                try
                {
                    await Task.Delay(Every, _stop.Token);
                    var body = await Http.GetStringAsync($"http://127.0.0.1:{port}/metrics", _stop.Token);
                    Scrapes++;
                    LastScrapeBytes = body.Length;
                }
                catch (OperationCanceledException) { return; }
                catch (HttpRequestException) { /* not up yet, or stopping */ }
            }
        });
    }

    public static Func<Task<IDemoCollector>> Start(Func<IReadOnlyList<string>, IDemoCollector> startWithArgs) => () =>
    {
        var port = ClusterNodes.FreePorts(1)[0];
        var inner = startWithArgs(["--http-port", port.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        return Task.FromResult<IDemoCollector>(new ScrapedCollector(inner, port));
    };

    public string Name => _inner.Name;
    public int Pid => _inner.Pid;
    public TimeSpan CpuTime => _inner.CpuTime;
    public int? ExitCode => _inner.ExitCode;

    public async Task StopAsync()
    {
        await _stop.CancelAsync();
        await _scraper;
        await _inner.StopAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _scraper;
        await _inner.DisposeAsync();
    }
}
