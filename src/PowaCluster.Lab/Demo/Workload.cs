using Npgsql;
using PowaCluster.Lab.Embedded;

namespace PowaCluster.Lab.Demo;

/// <summary>
/// A monitored server has activity: every datasource is fed, and every snapshot finds the workload's quals
/// (the demo's servers share two instances, and each pg_qualstats reset empties an instance; a round every
/// 20 ms is several between two resets, so quals rows per snapshot do not depend on how the collector
/// spaces its snapshots, and the collectors can be compared on them).
/// </summary>
public sealed class Workload : IAsyncDisposable
{
    static readonly TimeSpan DefaultPeriod = TimeSpan.FromMilliseconds(20);
    readonly List<NpgsqlConnection> _connections = [];
    readonly CancellationTokenSource _stop = new();
    Task _loop = Task.CompletedTask;

    /// <param name="period">between two rounds (20 ms by default: several rounds between two resets)</param>
    public static async Task<Workload> StartAsync(PowaLab lab, TimeSpan? period = null)
    {
        var every = period ?? DefaultPeriod;
        var w = new Workload();
        foreach (var r in lab.Remotes)
        {
            var c = new NpgsqlConnection(r.ConnectionString(PowaLab.Database).ConnectionString);
            await c.OpenAsync();
            w._connections.Add(c);
        }
        w._loop = Task.Run(async () =>
        {
            while (!w._stop.IsCancellationRequested)
            {
                foreach (var c in w._connections) await PowaLab.WorkAsync(c);
                await Task.Delay(every, w._stop.Token).ContinueWith(_ => { });
            }
        });
        return w;
    }

    public async ValueTask DisposeAsync()
    {
        if (_stop.IsCancellationRequested) return;
        _stop.Cancel();
        try { await _loop; }
        finally
        {
            foreach (var c in _connections) await c.DisposeAsync();
            _stop.Dispose();
        }
    }
}
