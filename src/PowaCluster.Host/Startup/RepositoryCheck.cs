using Npgsql;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Postgres;

namespace PowaCluster.Host.Startup;

/// <summary>Before anything starts: the repository answers and has powa 4 or later.</summary>
public static class RepositoryCheck
{
    public static async Task<PowaVersion> VerifyAsync(NpgsqlConnectionStringBuilder repository, CollectorSettings settings, CancellationToken ct)
    {
        var csb = PgSession.ForRole(repository, "powa-cluster start-up check", settings.ConnectTimeout, settings.ConnectTimeout);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(settings.ConnectTimeout + settings.ConnectTimeout);
        PowaVersion? v;
        try
        {
            await using var conn = await PgSession.OpenAsync(csb, cts.Token);
            v = await PgSession.GetPowaVersionAsync(conn, cts.Token);
        }
        catch (Exception e) when (e is NpgsqlException or OperationCanceledException or System.Net.Sockets.SocketException or ArgumentException)
        {
            throw new StartupException($"cannot connect to the repository {Dsn.Describe(csb)}: {PgSession.Describe(e)}");
        }
        if (v is null)
            throw new StartupException($"the powa extension is not installed in the repository database {Dsn.Describe(csb)}: CREATE EXTENSION powa CASCADE there first");
        if (v.Major < 4)
            throw new StartupException($"the repository {Dsn.Describe(csb)} has powa {v}; powa-cluster needs powa 4.0 or later");
        return v;
    }
}
