using Npgsql;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Postgres;
using PowaCluster.Collector.Spooling;

namespace PowaCluster.Host.Startup;

/// <summary>What the start-up check found: the SQL of the repository's powa, and what the repository is (RepositoryQueries.IdentityAsync).</summary>
public sealed record RepositoryFound(PowaSql Powa, string? Identity, bool FromSavedState = false);

/// <summary>The repository did not answer (refused, unreachable, timed out): a node that saved its state may start without it.</summary>
public sealed class RepositoryUnreachableException(string message) : StartupException(message);

/// <summary>Before anything starts: the repository answers and has a powa this collector serves (4 or 5); its SQL.</summary>
public static class RepositoryCheck
{
    public static async Task<RepositoryFound> VerifyAsync(NpgsqlConnectionStringBuilder repository, CollectorSettings settings, CancellationToken ct)
    {
        var csb = PgSession.ForRole(repository, "powa-cluster start-up check", settings.ConnectTimeout, settings.ConnectTimeout);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(settings.ConnectTimeout + settings.ConnectTimeout);
        try
        {
            await using var conn = await PgSession.OpenAsync(csb, cts.Token);
            var powa = await PowaOfAsync(conn, csb, cts.Token);
            return new RepositoryFound(powa, await RepositoryQueries.IdentityAsync(conn, cts.Token));
        }
        catch (Exception e) when (e is NpgsqlException or OperationCanceledException or System.Net.Sockets.SocketException or ArgumentException)
        {
            throw new RepositoryUnreachableException($"cannot connect to the repository {Dsn.Describe(csb)}: {PgSession.Describe(e)}");
        }
    }

    /// <summary>
    /// VerifyAsync, or when the repository cannot be reached, what this node saved of it the last time it could
    /// (NodeState, beside the spool): a node restarted during an outage collects into its spool. A node that
    /// never reached this repository, or has no spool, still refuses to start, with the connection's error.
    /// </summary>
    public static async Task<RepositoryFound> VerifyOrSavedAsync(NpgsqlConnectionStringBuilder repository, CollectorSettings settings,
        Action<string> warn, CancellationToken ct)
    {
        try { return await VerifyAsync(repository, settings, ct); }
        catch (RepositoryUnreachableException e)
        {
            if (settings.SpoolMaxBytes <= 0) throw new StartupException(e.Message);
            var saved = NodeState.Load(settings.SpoolDirectoryOrDefault, Dsn.Describe(repository), out var problem);
            if (saved is null || saved.Servers.Count == 0 || PowaVersion.Parse(saved.PowaVersion) is not { } powa)
                throw new StartupException(e.Message + (problem is null ? "" : $" (and {problem})"));
            warn($"{e.Message}; starting with the {saved.Servers.Count} servers this node saved at {saved.SavedUtc:yyyy-MM-dd HH:mm:ss} UTC " +
                 $"({NodeState.PathFor(settings.SpoolDirectoryOrDefault, saved.Repository)}): collecting into the spool until the repository is back");
            try { return new RepositoryFound(PowaSql.For(powa, saved.PowaSchema), saved.Identity, FromSavedState: true); }
            catch (UnsupportedPowaException u) { throw new StartupException(e.Message + $" (the saved state has {u.Message})"); }
        }
    }

    /// <summary>The SQL of the powa found in a repository connection; a StartupException naming what is wrong without one this collector serves.</summary>
    public static async Task<PowaSql> PowaOfAsync(NpgsqlConnection conn, NpgsqlConnectionStringBuilder csb, CancellationToken ct)
    {
        if (await PgSession.FindPowaAsync(conn, ct) is not { } powa)
            throw new StartupException($"the powa extension is not installed in the repository database {Dsn.Describe(csb)}: CREATE EXTENSION powa CASCADE there first");
        // The archivist's packages moved to another major (PoWA 4 to 5) under a repository of the old one: there is
        // no ALTER EXTENSION powa UPDATE path between majors, and the old SQL with the new library is no repository.
        await using (var cmd = new NpgsqlCommand("SELECT default_version FROM pg_catalog.pg_available_extensions WHERE name = 'powa'", conn))
            if (PowaVersion.Parse(await cmd.ExecuteScalarAsync(ct) as string) is { } available && available.Major != powa.Version.Major)
                throw new StartupException(
                    $"the repository database {Dsn.Describe(csb)} has powa {powa.Version}, but its PostgreSQL now has archivist {available} " +
                    $"installed: PoWA {powa.Version.Major} cannot be updated to PoWA {available.Major} (no ALTER EXTENSION powa UPDATE path " +
                    "between major versions). A PoWA " + available.Major + " repository is a new database: CREATE EXTENSION powa CASCADE in a new " +
                    "database, register the servers there with powa_register_server(), and start powa-cluster on it (README: Upgrading PoWA)",
                    StartupException.SetupExitCode);
        try { return PowaSql.For(powa.Version, powa.Schema); }
        catch (UnsupportedPowaException e) { throw new StartupException($"the repository {Dsn.Describe(csb)} has {e.Message}"); }
    }
}
