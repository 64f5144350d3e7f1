namespace PowaCluster.Lab.Scale;

/// <summary>
/// README's memory formula for a node ("Memory per node"), which k8s/statefulset.yaml's request and limit follow
/// and which the scale lab checks each node's peak resident memory against: a base, a part per server held, and
/// the stage budget (snapshots read and not yet stored fill it when the repository falls behind, as it does
/// during a takeover). A test keeps README, this class and the manifest in step.
/// </summary>
public static class PodMemory
{
    /// <summary>A node with its HTTP endpoint and metrics, holding no server, rounded up (scale lab: ~157 MB).</summary>
    public const int BaseMiB = 160;

    /// <summary>Per server held, rounded up (scale lab, one node, 20 → 330 servers at 60 s: ~0.2 MB).</summary>
    public const double PerServerMiB = 0.25;

    /// <summary>StageMemoryBudget's default, in MiB.</summary>
    public static int StageMiB => (int)(new Collector.Configuration.CollectorSettings().StageMemoryBudget / (1024 * 1024));

    /// <summary>The request: a node's share of the fleet while every node runs.</summary>
    public static int RequestMiB(int servers, int nodes) => (int)Math.Ceiling(BaseMiB + PerServerMiB * Share(servers, nodes));

    /// <summary>The limit: the share after one node is lost, and a full stage budget.</summary>
    public static int LimitMiB(int servers, int nodes) => LimitForHeld(Share(servers, Math.Max(1, nodes - 1)));

    /// <summary>What a node holding <paramref name="held"/> servers may reach at its worst.</summary>
    public static int LimitForHeld(int held) => (int)Math.Ceiling(BaseMiB + PerServerMiB * held + StageMiB);

    static int Share(int servers, int nodes) => (servers + nodes - 1) / nodes;
}
