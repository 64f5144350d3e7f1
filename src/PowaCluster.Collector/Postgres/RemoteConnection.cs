using Npgsql;

namespace PowaCluster.Collector.Postgres;

/// <summary>
/// A server's remote connection, owned by its actor: calls run one after the other, and closing it waits for
/// the call in flight (cancelled by its own token) instead of pulling the connection from under it.
/// Called from the owning actor only.
/// </summary>
public sealed class RemoteConnection(NpgsqlConnection conn)
{
    Task _tail = Task.CompletedTask;
    bool _closed;

    public bool IsBroken => _closed || PgSession.IsBroken(conn);

    /// <summary>
    /// Runs <paramref name="op"/> after the previous call; at once, on the caller's thread, when the
    /// connection is free (no extra thread hop).
    /// </summary>
    public Task<T> RunAsync<T>(Func<NpgsqlConnection, Task<T>> op)
    {
        ObjectDisposedException.ThrowIf(_closed, this);
        var task = After(_tail, op);
        _tail = task;
        return task;
    }

    async Task<T> After<T>(Task previous, Func<NpgsqlConnection, Task<T>> op)
    {
        if (!previous.IsCompleted)
        {
            try { await previous.ConfigureAwait(false); } catch (Exception) { /* its own caller saw it */ }
        }
        return await op(conn).ConfigureAwait(false);
    }

    /// <summary>Closes the connection once the call in flight has ended (a transaction left open is rolled back by the server).</summary>
    public void Close()
    {
        if (_closed) return;
        _closed = true;
        _tail.ContinueWith(_ => conn.Dispose(), TaskScheduler.Default);
    }
}
