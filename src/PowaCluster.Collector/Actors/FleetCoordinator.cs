using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Sharding;
using Akka.Event;
using Npgsql;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Control;
using PowaCluster.Collector.Hosting;
using PowaCluster.Collector.Postgres;

namespace PowaCluster.Collector.Actors;

/// <summary>
/// Cluster singleton. Reads the active servers (powa_servers with id > 0 and frequency > 0) at start, at every
/// resync and on RELOAD, through its node's writers; sends every one an idempotent EnsureCollecting through
/// the shard region (which starts, updates or keeps alive its entity) and tells the ones that disappeared to
/// stop. While a read hangs (a repository that accepts connections and answers nothing), every resync tick
/// still renews the leases of the servers it knows: a hung repository never stops the fleet. powa-web's
/// requests are its child's, the ControlDesk, which it tells the servers it knows and asks it to reload.
///
/// A new cluster's first allocation waits for its nodes (Formation below). Sharding allocates a shard when the
/// first message for one of its servers arrives, to the region with the fewest shards at that moment: if the
/// coordinator ensured every server as soon as it started, the first node up would be handed every shard and
/// the nodes that join seconds later would get theirs by rebalancing, each moved server stopped and connected
/// again. So a coordinator that finds no shard allocated anywhere holds its EnsureCollecting until
/// ExpectedNodes shard regions are registered, or ExpectedNodesWait has passed; a coordinator that takes over
/// a running cluster (some shards allocated) ensures at once.
/// </summary>
public sealed class FleetCoordinator : ReceiveActor, IWithTimers
{
    readonly TimeProvider _time = NodeServices.Of(Context.System).Time; // the node's clock (NodeServices)
    DateTime CurrentUtc => _time.GetUtcNow().UtcDateTime;
    static readonly TimeSpan FormationCheckEvery = TimeSpan.FromSeconds(1);

    readonly CollectorSettings _settings;
    readonly NpgsqlConnectionStringBuilder _repository; // for the ControlDesk
    readonly PowaSql _sql;
    readonly IActorRef _region;
    readonly IActorRef _writers;
    readonly IActorRef _stateKeeper;
    readonly ILoggingAdapter _log = Context.GetLogger();
    Dictionary<int, ServerRow> _known = [];
    bool _loading, _loadAgain, _refreshNext, _loadRefresh;
    readonly List<ControlRequest> _reloadWaiting = [];
    string? _lastError;
    bool _formed;
    DateTime _formationStartUtc;
    IActorRef _desk = ActorRefs.Nobody;

    public ITimerScheduler Timers { get; set; } = null!;

    public FleetCoordinator(CollectorSettings settings, NpgsqlConnectionStringBuilder repository, PowaSql sql, IActorRef region,
        IActorRef writers, IActorRef stateKeeper)
    {
        _stateKeeper = stateKeeper;
        _sql = sql;
        _settings = settings;
        _region = region;
        _writers = writers;
        _repository = repository;

        Receive<Resync>(_ =>
        {
            if (_loading) ReEnsure(null); // the last read has not come back: renew the leases with what we know
            StartResync(refresh: false);
        });
        Receive<Reload>(_ =>
        {
            _log.Info("Reload requested by a signal");
            StartResync(refresh: true);
        });
        Receive<ServersRead>(m =>
        {
            if (m.Error is null) OnLoaded(m.Rows, _loadRefresh);
            else OnLoadFailed($"cannot read powa_servers: {m.Error}");
        });

        Receive<ReloadRequested>(m =>
        {
            _reloadWaiting.Add(m.Request);
            StartResync(refresh: true);
        });
        Receive<ServerHandedOff>(OnHandedOff);
        Receive<CachedFleetFound>(OnCachedFleet);
        Receive<ClusterEvent.MemberRemoved>(OnMemberRemoved);
        Receive<ClusterEvent.CurrentClusterState>(_ => { });
        Receive<ReEnsureTick>(r => ReEnsure(r.SrvId));
        Receive<CheckFormation>(_ => CheckFormationAsync().PipeTo(Self, failure: _ => new FormationSeen(-1, 0)));
        Receive<FormationSeen>(OnFormationSeen);
    }

    protected override void PreStart()
    {
        _log.Info("FleetCoordinator started; reading powa_servers every {0:F0} s", _settings.ResyncInterval.TotalSeconds);
        _desk = Context.ActorOf(ControlDesk.Props(_settings, _repository, _sql, _region), "control-desk");
        StartFormation();
        Self.Tell(Resync.Instance);
        Timers.StartPeriodicTimer("resync", Resync.Instance, _settings.ResyncInterval);
        NodeCluster.Of(Context.System)?.Subscribe(Self, typeof(ClusterEvent.MemberRemoved));
    }

    protected override void PostStop()
    {
        NodeCluster.Of(Context.System)?.Unsubscribe(Self);
    }

    // ---- membership and hand-off: servers go on at once on the nodes that remain ---------------

    /// <summary>
    /// A node left or was downed: its shards move, and sharding starts an entity only when a message comes for
    /// it. Every server is ensured now, and twice more while the shard coordinator settles where the moved
    /// shards go (a message that reaches a region before it knows is not lost for long).
    /// </summary>
    void OnMemberRemoved(ClusterEvent.MemberRemoved m)
    {
        _log.Info("Node {0} left the cluster ({1}): its servers go on on the other nodes", m.Member.Address, m.PreviousStatus);
        ReEnsure(null);
        Timers.StartSingleTimer("re-ensure-1", new ReEnsureTick(null), TimeSpan.FromSeconds(2));
        Timers.StartSingleTimer("re-ensure-2", new ReEnsureTick(null), TimeSpan.FromSeconds(6));
    }

    void OnHandedOff(ServerHandedOff m)
    {
        if (!_known.ContainsKey(m.SrvId)) return; // removed or deactivated meanwhile: it stays stopped
        _log.Debug("Server {0} was handed off: starting it on its new node", m.SrvId);
        ReEnsure(m.SrvId);
        Timers.StartSingleTimer($"re-ensure-{m.SrvId}", new ReEnsureTick(m.SrvId), TimeSpan.FromSeconds(2));
    }

    /// <summary>
    /// This node is shutting down, and this coordinator with it: its successor ensures every server when it
    /// starts. Ensuring from here would only feed messages to a shard region that is stopping.
    /// </summary>
    bool ShuttingDown => CoordinatedShutdown.Get(Context.System).ShutdownReason is not null;

    void ReEnsure(int? srvid)
    {
        if (ShuttingDown || !_formed) return;
        if (srvid is { } id)
        {
            if (_known.TryGetValue(id, out var row)) _region.Tell(new EnsureCollecting(id, row.RowVersion));
            return;
        }
        foreach (var (other, row) in _known) _region.Tell(new EnsureCollecting(other, row.RowVersion));
    }

    // ---- resync: periodic, and RELOAD / SIGHUP with refresh ---------------------------------

    void StartResync(bool refresh)
    {
        if (_loading)
        {
            // The read in flight may have started before the change that RELOAD announces: read again after it.
            _loadAgain |= refresh;
            _refreshNext |= refresh;
            return;
        }
        _loading = true;
        _loadRefresh = refresh;
        _writers.Tell(new LoadServers(Self));
    }

    void OnLoaded(IReadOnlyList<ServerRow> servers, bool refresh)
    {
        _loading = false;
        if (_lastError is not null) _log.Info("Repository reachable again");
        _lastError = null;
        var current = servers.ToDictionary(s => s.Config.SrvId);
        var send = !ShuttingDown && _formed; // a new cluster's first allocation waits for its nodes (Formation)
        foreach (var (cfg, version) in servers)
        {
            if (!_known.TryGetValue(cfg.SrvId, out var old))
                _log.Info("Server {0} ({1}, alias {2}) is active: collecting it every {3} s", cfg.SrvId, ServerConfig.Shown(cfg.Name),
                    ServerConfig.Shown(cfg.Alias ?? "-"), cfg.Frequency);
            else if (old.RowVersion != version)
                _log.Info("Server {0} ({1}) changed: its collector reads its new configuration", cfg.SrvId, ServerConfig.Shown(cfg.Name));
            // The srvid and the row's version only: the entity reads the row itself, password included.
            if (send) _region.Tell(new EnsureCollecting(cfg.SrvId, version, refresh));
        }
        foreach (var gone in _known.Keys.Where(id => !current.ContainsKey(id)))
        {
            _log.Info("Server {0} was removed or deactivated: stopping its collection", gone);
            if (send) _region.Tell(new StopCollecting(gone));
        }
        _known = current;
        _desk.Tell(new ServersKnown(servers.Select(s => s.Config.SrvId).ToList()));
        AfterLoad(null);
    }

    void OnLoadFailed(string error)
    {
        _loading = false;
        // Said when it starts or changes; while the same outage lasts, every resync says it in the debug log only.
        if (error != _lastError) _log.Error(error);
        else _log.Debug(error);
        _lastError = error;
        // Keep the entities we know alive: a repository outage must not stop the fleet. A coordinator that
        // starts during one knows none yet: its node's saved state has them (StateKeeper).
        if (_known.Count == 0) _stateKeeper.Tell(CachedFleetWanted.Instance);
        ReEnsure(null);
        AfterLoad(error);
    }

    void OnCachedFleet(CachedFleetFound m)
    {
        if (_known.Count > 0 || m.Rows.Count == 0) return; // the repository answered meanwhile, or nothing saved
        _log.Warning("Collecting the {0} servers this node saved at {1:yyyy-MM-dd HH:mm:ss} UTC until powa_servers can be read", m.Rows.Count, m.SavedUtc);
        _known = m.Rows.ToDictionary(r => r.Config.SrvId);
        _desk.Tell(new ServersKnown([.. _known.Keys]));
        ReEnsure(null);
    }

    void AfterLoad(string? error)
    {
        if (_loadAgain)
        {
            _loadAgain = false;
            var refresh = _refreshNext;
            _refreshNext = false;
            StartResync(refresh);
            return;
        }
        if (_reloadWaiting.Count == 0) return;
        _desk.Tell(new ReloadDone(_reloadWaiting.ToList(), error));
        _reloadWaiting.Clear();
    }

    // ---- a new cluster's first allocation (Formation, in the class's summary) --------------------------

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

    /// <summary>
    /// This node's own region first (local, at once): holding shards, the cluster runs already (a coordinator
    /// that took over after its node's predecessor died must not wait for the statistics of a cluster where a
    /// dead region answers nothing). Otherwise the whole cluster's statistics (empty when a region did not answer).
    /// </summary>
    async Task<FormationSeen> CheckFormationAsync()
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

    public static Props Props(CollectorSettings settings, NpgsqlConnectionStringBuilder repository, PowaSql sql, IActorRef region,
        IActorRef writers, IActorRef? stateKeeper = null) =>
        Akka.Actor.Props.Create(() => new FleetCoordinator(settings, repository, sql, region, writers, stateKeeper ?? ActorRefs.Nobody));

    sealed record ReEnsureTick(int? SrvId);
    sealed class CheckFormation { public static readonly CheckFormation Instance = new(); }

    /// <summary>Shard regions registered with the shard coordinator, and shards allocated; -1 when sharding did not answer.</summary>
    sealed record FormationSeen(int Regions, int Shards);
}
