using Akka.Cluster.Sharding;
using PowaCluster.Collector.Actors;

namespace PowaCluster.Collector.Sharding;

/// <summary>Entity id = srvid; shard = hash of the id over a fixed number of shards (fixed for the life of a cluster).</summary>
public sealed class ServerMessageExtractor(int maxShards) : HashCodeMessageExtractor(maxShards)
{
    public override string? EntityId(object message) =>
        message is IServerMessage m ? m.SrvId.ToString(System.Globalization.CultureInfo.InvariantCulture) : null;
}
