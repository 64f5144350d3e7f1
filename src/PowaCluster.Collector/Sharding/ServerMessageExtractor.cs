using System.Globalization;
using Akka.Cluster.Sharding;
using PowaCluster.Collector.Actors;

namespace PowaCluster.Collector.Sharding;

/// <summary>
/// Entity id = srvid; shard = srvid modulo a fixed number of shards (fixed for the life of a cluster: a
/// change would send a server's messages to another shard while its entity still runs in the old one).
/// powa_servers.id is a serial, so servers spread evenly over shards, and least-shard allocation spreads
/// shards evenly over nodes; a hash would leave some shards with several servers and others with none.
/// </summary>
public sealed class ServerMessageExtractor(int numberOfShards) : IMessageExtractor
{
    public int NumberOfShards { get; } = numberOfShards > 0
        ? numberOfShards
        : throw new ArgumentOutOfRangeException(nameof(numberOfShards), "must be at least 1");

    public string? EntityId(object message) => message switch
    {
        IServerMessage m => m.SrvId.ToString(CultureInfo.InvariantCulture),
        _ => null, // ShardRegion.StartEntity and the like: Akka.Cluster.Sharding routes them itself (AK2001)
    };

    public object? EntityMessage(object message) => message;

    public string? ShardId(object message) => EntityId(message) is { } id ? ShardId(id, message) : null;

    public string ShardId(string entityId, object? messageHint = null)
    {
        var shard = long.TryParse(entityId, NumberStyles.Integer, CultureInfo.InvariantCulture, out var srvid)
            ? srvid % NumberOfShards
            : (uint)StableHash(entityId) % NumberOfShards;
        if (shard < 0) shard += NumberOfShards;
        return shard.ToString(CultureInfo.InvariantCulture);
    }

    /// <summary>string.GetHashCode differs between processes: a shard id must be the same on every node.</summary>
    static int StableHash(string s)
    {
        unchecked
        {
            var h = (int)2166136261;
            foreach (var ch in s) h = (h ^ ch) * 16777619;
            return h;
        }
    }
}
