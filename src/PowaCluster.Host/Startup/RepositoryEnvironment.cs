using Npgsql;

namespace PowaCluster.Host.Startup;

/// <summary>
/// libpq's environment variables that carry credentials or session options (PGPASSWORD, PGSSLCERT...) are the
/// repository's: Npgsql would otherwise hand them to every connection that does not set them itself, and a
/// powa_servers row with a NULL password would send the repository's password, client certificate or options
/// to whatever host it names. <see cref="Confine"/> folds them into the repository's connection string and
/// removes them from the process, so remote servers get only their row's password or the passfile's entry
/// for their host (PGPASSFILE, which names no secret itself, stays).
/// </summary>
public static class RepositoryEnvironment
{
    public static readonly string[] Variables = ["PGPASSWORD", "PGSSLCERT", "PGSSLKEY", "PGSSLROOTCERT", "PGSSLPASSWORD", "PGOPTIONS"];

    /// <summary>Folds the variables into <paramref name="repository"/> (where it sets nothing itself), then unsets them.</summary>
    public static void Confine(NpgsqlConnectionStringBuilder repository)
    {
        string? Take(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : null;
        repository.Password ??= Take("PGPASSWORD");
        repository.SslCertificate ??= Take("PGSSLCERT");
        repository.SslKey ??= Take("PGSSLKEY");
        repository.RootCertificate ??= Take("PGSSLROOTCERT");
        repository.SslPassword ??= Take("PGSSLPASSWORD");
        repository.Options ??= Take("PGOPTIONS");
        foreach (var v in Variables) Environment.SetEnvironmentVariable(v, null);
    }
}
