using Npgsql;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Postgres;

namespace PowaCluster.Collector.Hosting;

/// <summary>What every actor of a node is built from: the settings, the parsed repository DSN and its powa version.</summary>
public sealed record CollectorRuntime(CollectorSettings Settings, NpgsqlConnectionStringBuilder Repository, PowaVersion RepositoryPowa);
