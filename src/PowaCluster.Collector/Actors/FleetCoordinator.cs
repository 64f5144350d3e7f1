using Akka.Actor;
using Akka.Cluster;
using Akka.Event;
using Npgsql;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Control;
using PowaCluster.Collector.Postgres;

using PowaCluster.Collector.Hosting;

namespace PowaCluster.Collector.Actors;

/// <summary>
/// Cluster singleton. Reads the active servers (powa_servers with id > 0 and frequency > 0) at start, at every
/// resync and on RELOAD, through its node's writers; sends every one an idempotent EnsureCollecting through
/// the shard region (which starts, updates or keeps alive its entity) and tells the ones that disappeared to
/// stop. While a read hangs (a repository that accepts connections and answers nothing), every resync tick
/// still renews the leases of the servers it knows: a hung repository never stops the fleet. Its child
/// NotifyListener holds the cluster's one LISTEN powa_collector connection; the coordinator answers
/// powa-web's requests (RELOAD, WORKERS_STATUS, FORCE_SNAPSHOT) on its own repository connection, which
/// carries nothing else.
/// </summary>
public sealed partial class FleetCoordinator : ReceiveActor, IWithTimers
{
    readonly TimeProvider _time = NodeServices.Of(Context.System).Time; // the node's clock (NodeServices)
    readonly Telemetry.CollectorMetrics _metrics = NodeServices.Of(Context.System).Metrics;
    DateTime CurrentUtc => _time.GetUtcNow().UtcDateTime;
    static readonly TimeSpan StatusTimeout = TimeSpan.FromMilliseconds(700);
    static readonly TimeSpan ForceTimeout = TimeSpan.FromSeconds(3);

    readonly CollectorSettings _settings;
    readonly NpgsqlConnectionStringBuilder _csb;
    readonly PowaSql _sql;
    readonly IActorRef _region;
    readonly IActorRef _writers;
    readonly ILoggingAdapter _log = Context.GetLogger();
    readonly RepositoryLink _link;          // powa-web's requests: permission checks and replies, nothing else
    readonly NotifyGate _gate;
    Dictionary<int, ServerRow> _known = [];
    bool _loading, _loadAgain, _refreshNext, _loadRefresh;
    readonly List<ControlRequest> _reloadWaiting = [];
    string? _lastError;

    public ITimerScheduler Timers { get; set; } = null!;

    public FleetCoordinator(CollectorSettings settings, NpgsqlConnectionStringBuilder repository, PowaSql sql, IActorRef region,
        IActorRef writers)
    {
        _sql = sql;
        _settings = settings;
        _region = region;
        _writers = writers;
        _csb = PgSession.ForRole(repository, "PoWA collector - coordinator", settings.ConnectTimeout, settings.RepositoryTimeout);
        _link = new RepositoryLink(_csb, settings.ConnectTimeout + settings.RepositoryTimeout);
        _gate = new NotifyGate(_time, _metrics);

        Receive<Resync>(_ =>
        {
            if (_loading) ReEnsure(null); // the last read has not come back: renew the leases with what we know
            StartResync(refresh: false);
            LogFlood();
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

        Receive<ControlNotification>(OnNotification);
        Receive<Checked>(OnChecked);
        Receive<StatusesGathered>(OnStatuses);
        Receive<ServerAnswered>(f => Answer(f.Request, f.Status, f.Message));
        Receive<ServerHandedOff>(OnHandedOff);
        Receive<ClusterEvent.MemberRemoved>(OnMemberRemoved);
        Receive<ClusterEvent.CurrentClusterState>(_ => { });
        Receive<ReEnsureTick>(r => ReEnsure(r.SrvId));
        Receive<ReplySent>(m =>
        {
            // Once a minute at most: powa-web waits in vain for this answer, and the next ones likely fail alike.
            if (m.Error is not null && CurrentUtc - _lastReplyErrorUtc > TimeSpan.FromMinutes(1))
            {
                _lastReplyErrorUtc = CurrentUtc;
                _log.Warning("The answer to {0} could not be sent on the repository: {1}", m.Command, m.Error);
            }
        });
        FormationHandlers();
    }

    protected override void PreStart()
    {
        _log.Info("FleetCoordinator started; reading powa_servers every {0:F0} s", _settings.ResyncInterval.TotalSeconds);
        Context.ActorOf(NotifyListener.Props(_settings, _csb, _gate), "notify-listener");
        StartFormation();
        Self.Tell(Resync.Instance);
        Timers.StartPeriodicTimer("resync", Resync.Instance, _settings.ResyncInterval);
        NodeCluster.Of(Context.System)?.Subscribe(Self, typeof(ClusterEvent.MemberRemoved));
    }

    protected override void PostStop()
    {
        NodeCluster.Of(Context.System)?.Unsubscribe(Self);
        _link.Dispose();
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
        AfterLoad(null);
    }

    void OnLoadFailed(string error)
    {
        _loading = false;
        _lastError = error;
        _log.Error(error);
        // Keep the entities we know alive: a repository outage must not stop the fleet.
        ReEnsure(null);
        AfterLoad(error);
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
        foreach (var r in _reloadWaiting) Answer(r, error is null ? "OK" : "KO", error ?? "OK");
        _reloadWaiting.Clear();
    }

    public static Props Props(CollectorSettings settings, NpgsqlConnectionStringBuilder repository, PowaSql sql, IActorRef region,
        IActorRef writers) =>
        Akka.Actor.Props.Create(() => new FleetCoordinator(settings, repository, sql, region, writers));
}
