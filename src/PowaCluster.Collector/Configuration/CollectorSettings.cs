namespace PowaCluster.Collector.Configuration;

/// <summary>
/// Everything a collector node needs to know. Bound from the "PowaCluster" section of
/// appsettings.json / environment variables (PowaCluster__WriterPoolSize=8), then overridden by the command line.
/// </summary>
public sealed class CollectorSettings
{
    public const string SectionName = "PowaCluster";

    /// <summary>Repository DSN (libpq URI, libpq key=value or Npgsql connection string).</summary>
    public string? RepositoryDsn { get; set; }

    /// <summary>Where <see cref="RepositoryDsn"/> came from, for error messages ("--repository", a file path...).</summary>
    public string RepositoryDsnSource { get; set; } = "";

    public bool Debug { get; set; }

    /// <summary>Repository connections (and concurrent snapshot transactions) per node.</summary>
    public int WriterPoolSize { get; set; } = 4;

    /// <summary>How often the FleetCoordinator re-reads powa_servers.</summary>
    public TimeSpan ResyncInterval { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>An entity that hears nothing from the coordinator for this many resync intervals stops itself.</summary>
    public int EntityLeaseIntervals { get; set; } = 4;

    /// <summary>
    /// Characters of remote COPY output per chunk sent to a writer. 16 Ki characters keep each chunk (a
    /// 32 KiB string) off the large object heap.
    /// </summary>
    public int CopyChunkChars { get; set; } = 16 * 1024;

    /// <summary>Connection timeout, remote and repository.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Timeout of one remote step (a query, a COPY chunk read).</summary>
    public TimeSpan RemoteTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Timeout of one repository step (powa_take_snapshot may aggregate and purge).</summary>
    public TimeSpan RepositoryTimeout { get; set; } = TimeSpan.FromSeconds(300);

    /// <summary>First and last delay of the retry backoff after a remote error.</summary>
    public TimeSpan RetryMinDelay { get; set; } = TimeSpan.FromSeconds(2);
    public TimeSpan RetryMaxDelay { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Fixed for the life of a cluster: about ten per node of the largest cluster expected.</summary>
    public int NumberOfShards { get; set; } = 50;

    /// <summary>Akka.Remote endpoint of this node. Port 0 picks a free port (one-node cluster).</summary>
    public string ClusterHost { get; set; } = "127.0.0.1";
    public int ClusterPort { get; set; }
    public string[] Seeds { get; set; } = [];

    public void Validate()
    {
        if (WriterPoolSize < 1) throw new ArgumentException("WriterPoolSize must be at least 1");
        if (ResyncInterval < TimeSpan.FromSeconds(1)) throw new ArgumentException("ResyncInterval must be at least 1 second");
        if (CopyChunkChars < 1024) throw new ArgumentException("CopyChunkChars must be at least 1024");
        if (NumberOfShards < 1) throw new ArgumentException("NumberOfShards must be at least 1");
        if (EntityLeaseIntervals < 2) throw new ArgumentException("EntityLeaseIntervals must be at least 2");
    }
}
