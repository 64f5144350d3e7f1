using Npgsql;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Postgres;
using PowaCluster.Collector.Security;
using PowaCluster.Collector.Spooling;
using PowaCluster.Collector.Staging;
using PowaCluster.Collector.Telemetry;

namespace PowaCluster.Collector.Hosting;

/// <summary>
/// What every actor of a node is built from: the settings, the parsed repository DSN and the SQL of its powa,
/// and the node's stage memory (shared by all its servers).
/// </summary>
public sealed record CollectorRuntime(CollectorSettings Settings, NpgsqlConnectionStringBuilder Repository, PowaSql Powa) : IDisposable
{
    public StageBudget Stages { get; } = new(Settings.StageMemoryBudget, Settings.StageDirectory, Settings.StageFileBudget, Settings.MaxSnapshotBytes);

    /// <summary>The node's clock (NodeServices): what it schedules and decides by age; a fake one in tests.</summary>
    public TimeProvider Time { get; init; } = TimeProvider.System;

    CollectorMetrics? _metrics;

    /// <summary>The node's instruments (NodeServices), made on first use on the node's clock.</summary>
    public CollectorMetrics Metrics => _metrics ??= new CollectorMetrics(Time);

    /// <summary>
    /// What the repository is (RepositoryQueries.IdentityAsync), read at start: names the spool, and every writer
    /// connection must find the same; null when it cannot be read (then the DSN's text names the spool).
    /// </summary>
    public string? RepositoryIdentity { get; init; }

    SnapshotSpool? _spool;

    /// <summary>
    /// The node's spool for this repository, opened on first use (its lock held until the process exits, or
    /// Dispose); Problem says why it cannot be used.
    /// </summary>
    public SnapshotSpool Spool => _spool ??= SnapshotSpool.Open(Settings.SpoolDirectoryOrDefault, RepositoryIdentity, Dsn.Describe(Repository),
        Settings.SpoolMaxBytes, Settings.SpoolMaxAge, Stages, Time);

    /// <summary>The node's certificate and the cluster's CA, read at start; null when remoting runs without TLS.</summary>
    public ClusterTls? Tls { get; } = ClusterTls.Load(Settings);

    /// <summary>Lets the spool's lock go (the process exiting does too) and the node's instruments.</summary>
    public void Dispose()
    {
        _spool?.Dispose();
        _metrics?.Dispose();
    }
}
