using Akka.Actor;
using Akka.Cluster;
using Akka.Event;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Kubernetes;

using PowaCluster.Collector.Hosting;

namespace PowaCluster.Collector.Actors;

/// <summary>
/// Kubernetes mode: forms or joins the cluster from the pods the Kubernetes API lists (KubernetesPods: pods
/// selected by label, their container port named RemotingPortName).
/// Once at least RequiredContactPoints pods are listed and the list has not changed for StableMargin, their
/// Akka addresses, sorted, become the seed nodes: the lowest one forms a new cluster if none of the others
/// answers (Akka's first-seed rule), every other pod joins whichever member answers, and a pod that starts
/// while a cluster runs joins it. A pod that is not an Up member after JoinTimeout stops with a clear error
/// (exit code 1), and Kubernetes starts it again with a fresh pod list.
/// </summary>
public sealed class KubernetesJoiner : ReceiveActor, IWithTimers
{
    readonly TimeProvider _time = NodeServices.Of(Context.System).Time; // the node's clock (NodeServices)
    DateTime CurrentUtc => _time.GetUtcNow().UtcDateTime;
    static readonly TimeSpan LookupInterval = TimeSpan.FromSeconds(2);
    static readonly TimeSpan LookupTimeout = TimeSpan.FromSeconds(10);

    readonly KubernetesSettings _settings;
    readonly ILoggingAdapter _log = Context.GetLogger();
    readonly Cluster _cluster = Cluster.Get(Context.System);
    readonly DateTime _startedUtc;
    KubernetesPods? _pods;
    string? _lastSet;
    DateTime _lastSetSinceUtc;
    string? _lastProblem;
    bool _joining;

    public ITimerScheduler Timers { get; set; } = null!;

    public KubernetesJoiner(KubernetesSettings settings)
    {
        _settings = settings;
        _startedUtc = CurrentUtc;
        Receive<LookUp>(_ => LookUpPods());
        Receive<PodsListed>(OnListed);
        Receive<LookupFailed>(f => Problem(f.Error));
        Receive<CheckUp>(_ => OnCheckUp());
        Receive<ClusterEvent.MemberUp>(m =>
        {
            if (!m.Member.Address.Equals(_cluster.SelfAddress)) return;
            _log.Info("Member of the cluster after {0:F1} s", (CurrentUtc - _startedUtc).TotalSeconds);
            Context.Stop(Self);
        });
        Receive<ClusterEvent.CurrentClusterState>(_ => { });
    }

    protected override void PreStart()
    {
        _cluster.Subscribe(Self, typeof(ClusterEvent.MemberUp));
        Timers.StartSingleTimer("give-up", CheckUp.Instance, _settings.JoinTimeout);
        Self.Tell(LookUp.Instance);
    }

    protected override void PostStop()
    {
        _cluster.Unsubscribe(Self);
        _pods?.Dispose();
    }

    void LookUpPods()
    {
        if (_joining) return;
        try { _pods ??= new KubernetesPods(_settings); }
        catch (Exception e) when (e is InvalidOperationException or UriFormatException or IOException or
                                       System.Security.Cryptography.CryptographicException)
        {
            Problem($"cannot use the Kubernetes API: {e.Message}");
            return;
        }
        var pods = _pods;
        Task.Run(async () =>
        {
            using var cts = new CancellationTokenSource(LookupTimeout);
            return await pods.ListAsync(cts.Token).ConfigureAwait(false);
        }).PipeTo(Self,
            success: list => new PodsListed(list),
            failure: e => new LookupFailed(e.GetBaseException().Message));
    }

    void OnListed(PodsListed m)
    {
        if (_joining) return;
        var set = string.Join(",", m.Endpoints);
        if (set != _lastSet)
        {
            _lastSet = set;
            _lastSetSinceUtc = CurrentUtc;
            _log.Info("Kubernetes lists {0} collector pod(s): {1}", m.Endpoints.Count, m.Endpoints.Count == 0 ? "none" : set);
        }
        if (m.Endpoints.Count < _settings.RequiredContactPoints)
        {
            Problem($"{m.Endpoints.Count} running pod(s) with a \"{_settings.RemotingPortName}\" port for the label selector {_pods?.LabelSelector}, " +
                    $"{_settings.RequiredContactPoints} needed (RequiredContactPoints)");
            return;
        }
        if (CurrentUtc - _lastSetSinceUtc < _settings.StableMargin)
        {
            Timers.StartSingleTimer("lookup", LookUp.Instance, LookupInterval);
            return;
        }
        _joining = true;
        var seeds = m.Endpoints.Select(e => new Address(_cluster.SelfAddress.Protocol, Context.System.Name, e.Ip, e.Port)).ToList();
        _log.Info("Joining the cluster through {0}", string.Join(", ", seeds));
        _cluster.JoinSeedNodes(seeds);
    }

    void Problem(string error)
    {
        if (error != _lastProblem) _log.Warning("Joining the cluster: {0}; trying again", error);
        _lastProblem = error;
        Timers.StartSingleTimer("lookup", LookUp.Instance, LookupInterval);
    }

    void OnCheckUp()
    {
        if (_cluster.SelfMember.Status == MemberStatus.Up) { Context.Stop(Self); return; }
        var why = _joining ? "the seed nodes listed did not let it join" : _lastProblem ?? "no pod list yet";
        _log.Error("Not a member of the cluster after {0:F0} s ({1}): stopping, to start again with a fresh pod list",
            _settings.JoinTimeout.TotalSeconds, why);
        CoordinatedShutdown.Get(Context.System).Run(JoinFailedReason.Instance);
    }

    sealed record LookUp { public static readonly LookUp Instance = new(); }
    sealed record PodsListed(IReadOnlyList<PodEndpoint> Endpoints);
    sealed record LookupFailed(string Error);
    sealed record CheckUp { public static readonly CheckUp Instance = new(); }

    public static Props Props(KubernetesSettings settings) => Akka.Actor.Props.Create(() => new KubernetesJoiner(settings));
}

/// <summary>Why a node stopped when it could not join its cluster in time: powa-cluster run exits with 1.</summary>
public sealed class JoinFailedReason : CoordinatedShutdown.Reason
{
    public static readonly JoinFailedReason Instance = new();
    JoinFailedReason() { }
    public override int ExitCode => 1;
}
