using Npgsql;

namespace PowaCluster.Collector.Postgres;

/// <summary>
/// One repository connection shared by the asynchronous work of one actor: calls run one after the other,
/// each with its timeout, and a broken connection is replaced on the next call.
/// </summary>
public sealed class RepositoryLink(NpgsqlConnectionStringBuilder csb, TimeSpan timeout) : IDisposable
{
    NpgsqlConnection? _conn;
    Task _tail = Task.CompletedTask;

    public Task<T> RunAsync<T>(Func<NpgsqlConnection, CancellationToken, Task<T>> op)
    {
        var previous = _tail;
        var task = Task.Run(async () =>
        {
            try { await previous.ConfigureAwait(false); } catch (Exception) { /* its own caller saw it */ }
            using var cts = PgSession.Timeout(timeout);
            if (_conn is null || PgSession.IsBroken(_conn))
            {
                if (_conn is not null) await _conn.DisposeAsync().ConfigureAwait(false);
                _conn = null;
                _conn = await PgSession.OpenAsync(csb, cts.Token).ConfigureAwait(false);
            }
            return await op(_conn, cts.Token).ConfigureAwait(false);
        });
        _tail = task;
        return task;
    }

    /// <summary>Closes the connection once the call in flight, if any, has ended; never blocks the caller (an actor's thread).</summary>
    public void Dispose()
    {
        var tail = _tail;
        _ = tail.ContinueWith(_ => { _conn?.Dispose(); _conn = null; }, TaskScheduler.Default);
    }
}
