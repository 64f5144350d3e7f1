using Npgsql;

namespace PowaCluster.Tests.Support;

/// <summary>Talks to the collector as powa-web does: LISTEN on a reply channel, NOTIFY powa_collector, wait.</summary>
public sealed class PowaWebClient : IAsyncDisposable
{
    readonly NpgsqlConnection _conn;
    readonly Queue<string> _received = new();

    PowaWebClient(NpgsqlConnection conn)
    {
        _conn = conn;
        _conn.Notification += (_, e) => { lock (_received) _received.Enqueue(e.Channel + "\n" + e.Payload); };
    }

    public static async Task<PowaWebClient> ConnectAsync(NpgsqlConnectionStringBuilder csb)
    {
        var conn = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(csb.ConnectionString) { ApplicationName = "powa-web test client" }.ConnectionString);
        await conn.OpenAsync();
        return new PowaWebClient(conn);
    }

    public async Task ListenAsync(string channel)
    {
        await using var cmd = new NpgsqlCommand($"LISTEN \"{channel.Replace("\"", "\"\"")}\"", _conn);
        await cmd.ExecuteNonQueryAsync();
    }

    public async Task NotifyAsync(string payload)
    {
        await using var cmd = new NpgsqlCommand("SELECT pg_notify('powa_collector', $1)", _conn) { Parameters = { new() { Value = payload } } };
        await cmd.ExecuteNonQueryAsync();
    }

    /// <summary>The next notification received (channel and payload), or null after the timeout.</summary>
    public async Task<(string Channel, string Payload)?> NextAsync(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            lock (_received)
                if (_received.TryDequeue(out var s))
                {
                    var i = s.IndexOf('\n');
                    return (s[..i], s[(i + 1)..]);
                }
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero) return null;
            // Whole milliseconds, at least 1: Npgsql takes a timeout of 0 to mean "wait forever".
            await _conn.WaitAsync((int)Math.Clamp(Math.Ceiling(left.TotalMilliseconds), 1, 200));
        }
    }

    /// <summary>Sends "COMMAND channel args " (with powa-web's trailing space) and returns the reply payload.</summary>
    public async Task<string?> AskAsync(string command, string channel, string args = "", TimeSpan? timeout = null)
    {
        await ListenAsync(channel);
        await NotifyAsync($"{command} {channel} {args}".TrimEnd() + " ");
        var r = await NextAsync(timeout ?? TimeSpan.FromSeconds(5));
        return r?.Payload;
    }

    /// <summary>A NOTIFY sent before the collector's LISTEN is lost: ask until it answers.</summary>
    public async Task WaitForCollectorAsync(TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30));
        while (await AskAsync("WORKERS_STATUS", "ready", "", TimeSpan.FromSeconds(1)) is null)
            if (DateTime.UtcNow > deadline) throw new Xunit.Sdk.XunitException("no collector answered WORKERS_STATUS");
        // Drop late answers to earlier attempts.
        while (await NextAsync(TimeSpan.FromMilliseconds(300)) is not null) { }
    }

    public ValueTask DisposeAsync() => _conn.DisposeAsync();
}
