using System.Globalization;
using Npgsql;
using PowaCluster.Lab.Bench;

namespace PowaCluster.Lab.Outage;

/// <summary>Peak resident memory of the collectors during the outage and after it (/proc).</summary>
sealed class Peaks(int ours, int? theirs)
{
    public long OursDuring, OursAfter, TheirsDuring, TheirsAfter;

    public void Sample(bool during)
    {
        var o = ProcessProbe.Memory(ours).RssBytes;
        var t = theirs is { } pid ? ProcessProbe.Memory(pid).RssBytes : 0;
        if (during) (OursDuring, TheirsDuring) = (Math.Max(OursDuring, o), Math.Max(TheirsDuring, t));
        else (OursAfter, TheirsAfter) = (Math.Max(OursAfter, o), Math.Max(TheirsAfter, t));
    }
}

/// <summary>
/// Live snapshots stored while the backlog drains, by servers without one: each change of a server's
/// powa_snapshot_metas.snapts (when its snapshot was taken) is a snapshot stored; the delay is when it was
/// seen (polled every 250 ms) minus when it was taken.
/// </summary>
sealed class LiveDelays
{
    readonly Dictionary<int, DateTime> _last = [];
    int _count;
    double _max;

    public async Task PollAsync(NpgsqlConnection monitor, IReadOnlyList<int> ids)
    {
        if (ids.Count == 0) return;
        await using var cmd = new NpgsqlCommand("SELECT srvid, snapts FROM powa_snapshot_metas WHERE srvid = ANY($1)", monitor)
        { Parameters = { new() { Value = ids.ToArray() } } };
        var now = LabClock.Utc;
        await using var r = await cmd.ExecuteReaderAsync();
        while (await r.ReadAsync())
        {
            var id = r.GetInt32(0);
            var at = r.GetFieldValue<DateTime>(1);
            if (at == DateTime.MinValue) continue; // -infinity: never
            at = at.ToUniversalTime();
            if (_last.TryGetValue(id, out var before) && at > before)
            {
                _count++;
                _max = Math.Max(_max, (now - at).TotalSeconds);
            }
            _last[id] = at;
        }
    }

    public string Describe() => _count == 0 ? "none seen" : $"{_max:F1} s ({_count} live snapshots)";
}

/// <summary>One scrape of a node's /metrics: a series' value summed over its labels.</summary>
static class Metrics
{
    static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    public static async Task<Func<string, string>> ScrapeAsync(int port)
    {
        string body;
        try { body = await Http.GetStringAsync($"http://127.0.0.1:{port}/metrics"); }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException) { return _ => "?"; }
        return name =>
        {
            double sum = 0;
            var found = false;
            foreach (var line in body.Split('\n'))
            {
                if (!line.StartsWith(name, StringComparison.Ordinal) || line.Length <= name.Length || line[name.Length] is not (' ' or '{')) continue;
                var value = line[(line.LastIndexOf('}') is var b and >= 0 ? b + 1 : name.Length)..].Trim().Split(' ')[0];
                if (double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var v)) { sum += v; found = true; }
            }
            return found ? sum.ToString("F0", CultureInfo.InvariantCulture) : "?";
        };
    }
}
