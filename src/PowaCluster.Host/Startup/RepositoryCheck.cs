using Npgsql;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Postgres;

namespace PowaCluster.Host.Startup;

/// <summary>Before anything starts: the repository answers and has a powa this collector serves (4 or 5); its SQL.</summary>
public static class RepositoryCheck
{
    public static async Task<PowaSql> VerifyAsync(NpgsqlConnectionStringBuilder repository, CollectorSettings settings, CancellationToken ct)
    {
        var csb = PgSession.ForRole(repository, "powa-cluster start-up check", settings.ConnectTimeout, settings.ConnectTimeout);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(settings.ConnectTimeout + settings.ConnectTimeout);
        try
        {
            await using var conn = await PgSession.OpenAsync(csb, cts.Token);
            return await PowaOfAsync(conn, csb, cts.Token);
        }
        catch (Exception e) when (e is NpgsqlException or OperationCanceledException or System.Net.Sockets.SocketException or ArgumentException)
        {
            throw new StartupException($"cannot connect to the repository {Dsn.Describe(csb)}: {PgSession.Describe(e)}");
        }
    }

    /// <summary>The SQL of the powa found in a repository connection; a StartupException naming what is wrong without one this collector serves.</summary>
    public static async Task<PowaSql> PowaOfAsync(NpgsqlConnection conn, NpgsqlConnectionStringBuilder csb, CancellationToken ct)
    {
        if (await PgSession.FindPowaAsync(conn, ct) is not { } powa)
            throw new StartupException($"the powa extension is not installed in the repository database {Dsn.Describe(csb)}: CREATE EXTENSION powa CASCADE there first");
        try { return PowaSql.For(powa.Version, powa.Schema); }
        catch (UnsupportedPowaException e) { throw new StartupException($"the repository {Dsn.Describe(csb)} has {e.Message}"); }
    }
}
