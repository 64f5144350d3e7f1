using Akka.Actor;
using Akka.Cluster.Sharding;
using Akka.Event;

namespace PowaCluster.Collector.Actors;

/// <summary>
/// A new cluster's first allocation (the rest of the FleetCoordinator is in FleetCoordinator.cs). Sharding
/// allocates a shard when the first message for one of its servers arrives, to the region with the fewest
/// shards at that moment: if the coordinator ensured every server as soon as it started, the first node up
/// would be handed every shard and the nodes that join seconds later would get theirs by rebalancing, each
/// moved server stopped and connected again. So a coordinator that finds no shard allocated anywhere holds
/// its EnsureCollecting until ExpectedNodes shard regions are registered, or ExpectedNodesWait has passed; a
/// coordinator that takes over a running cluster (some shards allocated) ensures at once.
/// </summary>
public sealed partial class FleetCoordinator
{
    sealed class CheckFormation { public static readonly CheckFormation Instance = new(); }

    /// <summary>Shard regions registered with the shard coordinator, and shards allocated; -1 when sharding did not answer.</summary>
    sealed record FormationSeen(int Regions, int Shards);

    static readonly TimeSpan FormationCheckEvery = TimeSpan.FromSeconds(1);

    bool _formed;
    DateTime _formationStartUtc;

    void StartFormation()
    {
        var expected = _settings.ExpectedNodesOrDefault;
        if (expected <= 1)
        {
            _formed = true;
            return;
        }
        _formationStartUtc = CurrentUtc;
        Self.Tell(CheckFormation.Instance);
    }

    /// <summary>Registered by the constructor.</summary>
    void FormationHandlers()
    {
        Receive<CheckFormation>(_ => CheckAsync().PipeTo(Self, failure: _ => new FormationSeen(-1, 0)));
        Receive<FormationSeen>(OnFormationSeen);
    }

    /// <summary>
    /// This node's own region first (local, at once): holding shards, the cluster runs already (a coordinator
    /// that took over after its node's predecessor died must not wait for the statistics of a cluster where a
    /// dead region answers nothing). Otherwise the whole cluster's statistics (empty when a region did not answer).
    /// </summary>
    async Task<FormationSeen> CheckAsync()
    {
        var local = await _region.Ask<CurrentShardRegionState>(GetShardRegionState.Instance, TimeSpan.FromSeconds(3)).ConfigureAwait(false);
        if (local.Shards.Count > 0) return new FormationSeen(0, local.Shards.Count);
        var s = await _region.Ask<ClusterShardingStats>(new GetClusterShardingStats(TimeSpan.FromSeconds(3)), TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        return new FormationSeen(s.Regions.Count == 0 ? -1 : s.Regions.Count, s.Regions.Values.Sum(r => r.Stats.Count));
    }

    void OnFormationSeen(FormationSeen m)
    {
        if (_formed) return;
        var expected = _settings.ExpectedNodesOrDefault;
        var waited = CurrentUtc - _formationStartUtc;
        if (m.Shards > 0)
            Formed("servers are allocated already (a running cluster)");
        else if (m.Regions >= expected)
            Formed($"{m.Regions} nodes of {expected} expected are members, after {waited.TotalSeconds:F1} s");
        else if (waited >= _settings.ExpectedNodesWait)
        {
            _log.Warning("Only {0} of the {1} nodes expected (ExpectedNodes) are members after {2:F0} s (ExpectedNodesWait): " +
                         "allocating the servers to them; nodes that join later take their share by rebalancing",
                Math.Max(m.Regions, 0), expected, waited.TotalSeconds);
            Formed(null);
        }
        else
            Timers.StartSingleTimer("formation", CheckFormation.Instance, FormationCheckEvery);
    }

    void Formed(string? why)
    {
        _formed = true;
        if (why is not null) _log.Info("Allocating {0} servers: {1}", _known.Count, why);
        ReEnsure(null);
    }
}
