using Npgsql;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Postgres;
using PowaCluster.Collector.Security;
using PowaCluster.Collector.Staging;

namespace PowaCluster.Collector.Hosting;

/// <summary>
/// What every actor of a node is built from: the settings, the parsed repository DSN and the SQL of its powa,
/// and the node's stage memory (shared by all its servers).
/// </summary>
public sealed record CollectorRuntime(CollectorSettings Settings, NpgsqlConnectionStringBuilder Repository, PowaSql Powa)
{
    public StageBudget Stages { get; } = new(Settings.StageMemoryBudget, Settings.StageDirectory, Settings.StageFileBudget);

    /// <summary>The node's certificate and the cluster's CA, read at start; null when remoting runs without TLS.</summary>
    public ClusterTls? Tls { get; } = ClusterTls.Load(Settings);
}
