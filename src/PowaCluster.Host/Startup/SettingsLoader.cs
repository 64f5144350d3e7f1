using Microsoft.Extensions.Configuration;
using Npgsql;
using PowaCluster.Collector.Configuration;
using PowaCluster.Host.Cli;

namespace PowaCluster.Host.Startup;

/// <summary>A configuration problem found before start; the message is the one line printed.</summary>
/// <param name="exitCode">1; SetupExitCode for a set-up that starting again will not fix (systemd does not restart it)</param>
public class StartupException(string message, int exitCode = 1) : Exception(message)
{
    /// <summary>EX_CONFIG (sysexits.h): the unit's RestartPreventExitStatus, so that systemd does not loop on it.</summary>
    public const int SetupExitCode = 78;

    public int ExitCode { get; } = exitCode;
}

/// <summary>
/// Resolves the node's settings. Repository DSN, first found: --repository; --config FILE (powa-collector's
/// JSON); PowaCluster:RepositoryDsn in appsettings.json or the environment (PowaCluster__RepositoryDsn);
/// powa-collector's JSON file in its usual locations.
/// </summary>
public static class SettingsLoader
{
    public static (CollectorSettings Settings, NpgsqlConnectionStringBuilder Repository) Load(
        CommandLine cli, IConfiguration configuration, IReadOnlyList<string>? referenceLocations = null)
    {
        var s = new CollectorSettings();
        try
        {
            configuration.GetSection(CollectorSettings.SectionName).Bind(s);
        }
        catch (InvalidOperationException e)
        {
            throw new StartupException($"invalid {CollectorSettings.SectionName} settings: {e.Message}");
        }
        if (cli.Debug) s.Debug = true;
        if (cli.PoolSize is { } p) s.WriterPoolSize = p;
        if (cli.ClusterHost is { } h) s.ClusterHost = h;
        if (cli.ClusterPort is { } cp) s.ClusterPort = cp;
        if (cli.Seeds.Count > 0) s.Seeds = cli.Seeds.ToArray();
        if (cli.HttpPort is { } hp) s.HttpPort = hp;
        if (cli.LogFormat is { } lf) s.LogFormat = lf;
        try { s.Validate(); }
        catch (ArgumentException e) { throw new StartupException($"invalid setting: {e.Message}"); }

        try
        {
            if (cli.Repository is { } dsn)
            {
                s.RepositoryDsn = dsn;
                s.RepositoryDsnSource = "--repository";
            }
            else if (cli.ConfigFile is { } file)
            {
                var rc = ReferenceConfigFile.Load(file);
                s.RepositoryDsn = rc.RepositoryDsn;
                s.RepositoryDsnSource = rc.Path;
                s.Debug |= rc.Debug;
            }
            else if (!string.IsNullOrWhiteSpace(s.RepositoryDsn))
            {
                s.RepositoryDsnSource = $"setting {CollectorSettings.SectionName}:{nameof(CollectorSettings.RepositoryDsn)}";
            }
            else
            {
                var locations = referenceLocations ?? ReferenceConfigFile.DefaultLocations();
                var rc = ReferenceConfigFile.FindAndLoad(locations) ?? throw new StartupException(
                    "no repository DSN: give --repository DSN, set PowaCluster__RepositoryDsn, or write a powa-collector " +
                    "configuration file ({\"repository\": {\"dsn\": \"postgresql://powa@localhost:5432/powa\"}}) in one of: " +
                    string.Join(", ", locations));
                s.RepositoryDsn = rc.RepositoryDsn;
                s.RepositoryDsnSource = rc.Path;
                s.Debug |= rc.Debug;
            }
        }
        catch (ConfigFileException e)
        {
            throw new StartupException(e.Message);
        }

        NpgsqlConnectionStringBuilder repo;
        try { repo = Dsn.Parse(s.RepositoryDsn!); }
        catch (DsnException e) { throw new StartupException($"invalid repository DSN (from {s.RepositoryDsnSource}): {e.Message}"); }
        return (s, repo);
    }
}
