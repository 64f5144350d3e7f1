using System.Net.Sockets;
using System.Reflection;
using Npgsql;

namespace PowaCluster.Collector.Postgres;

/// <summary>
/// The timeout of a call on a remote connection: when it expires the connection is closed, which ends the
/// call at once. Not a cancellation token handed to Npgsql: on a token, Npgsql cancels the query through a
/// new connection to the server and, with SSL possible, waits synchronously for the server's answer to
/// its SSL request, in the timer's thread-pool thread. A remote that hangs never answers, so each timeout
/// held a thread for the connect timeout, and a few at once starved the pool: every server of the node
/// stalled (measured: healthy servers got 84 % of their snapshots while another remote was frozen 90 s).
/// Nor Dispose: closing is graceful, it reads the rest of the result synchronously from a server that does not
/// send it. The connection's socket is shut down instead (Break), which ends the pending call at once.
/// </summary>
public sealed class RemoteDeadline : IDisposable
{
    readonly Timer _timer;
    int _expired;

    public RemoteDeadline(NpgsqlConnection conn, TimeSpan timeout)
    {
        Timeout = timeout;
        _timer = new Timer(_ =>
        {
            if (Interlocked.Exchange(ref _expired, 1) != 0) return;
            Break(conn);
        }, null, timeout, System.Threading.Timeout.InfiniteTimeSpan);
    }

    public TimeSpan Timeout { get; }
    public bool Expired => Volatile.Read(ref _expired) == 1;

    /// <summary>Runs <paramref name="call"/>; when the deadline closed the connection, a TimeoutException says so.</summary>
    public static async Task<T> RunAsync<T>(NpgsqlConnection conn, TimeSpan timeout, Func<Task<T>> call)
    {
        using var deadline = new RemoteDeadline(conn, timeout);
        try { return await call().ConfigureAwait(false); }
        catch (Exception e) when (deadline.Expired && e is not OutOfMemoryException)
        {
            throw deadline.TimedOut();
        }
    }

    public TimeoutException TimedOut() => new($"the remote server did not answer within {Timeout.TotalSeconds:F0} s");

    public void Dispose() => _timer.Dispose();

    // Npgsql has no public way to break a connection at once. Its internals, checked by a test against the
    // pinned version (RemoteDeadlineTests): NpgsqlConnection.Connector, NpgsqlConnector._socket.
    static readonly PropertyInfo? ConnectorProperty =
        typeof(NpgsqlConnection).GetProperty("Connector", BindingFlags.NonPublic | BindingFlags.Instance);

    internal static Socket? SocketOf(NpgsqlConnection conn)
    {
        var connector = ConnectorProperty?.GetValue(conn);
        return connector?.GetType().GetField("_socket", BindingFlags.NonPublic | BindingFlags.Instance)?.GetValue(connector) as Socket;
    }

    /// <summary>
    /// Ends whatever the connection is doing, now, from any thread: its socket is shut down, the pending call
    /// fails and Npgsql marks the connection broken. Should Npgsql's internals change, the connection is
    /// closed on a thread of its own, so that no caller waits for it.
    /// </summary>
    public static void Break(NpgsqlConnection conn)
    {
        try
        {
            if (SocketOf(conn) is { } socket)
            {
                socket.Shutdown(SocketShutdown.Both);
                return;
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or TargetException or FieldAccessException) { }
        _ = Task.Run(() => { try { conn.Dispose(); } catch (Exception) { /* closed either way */ } });
    }
}
