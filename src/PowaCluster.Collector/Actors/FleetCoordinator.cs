using Akka.Actor;
using Akka.Cluster;
using Akka.Event;
using Npgsql;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Control;
using PowaCluster.Collector.Postgres;

namespace PowaCluster.Collector.Actors;

/// <summary>
/// Cluster singleton. Reads the active servers (powa_servers with id > 0 and frequency > 0) at start, at every
/// resync and on RELOAD; sends every one an idempotent EnsureCollecting through the shard region (which
/// starts, updates or keeps alive its entity) and tells the ones that disappeared to stop. Its child
/// NotifyListener holds the cluster's one LISTEN powa_collector connection; the coordinator answers
/// powa-web's requests (RELOAD, WORKERS_STATUS, FORCE_SNAPSHOT) on its own repository connection.
/// </summary>
public sealed class FleetCoordinator : ReceiveActor, IWithTimers
{
    public const string Version = "0.1.0";
    static readonly TimeSpan StatusTimeout = TimeSpan.FromMilliseconds(700);
    static readonly TimeSpan ForceTimeout = TimeSpan.FromSeconds(3);

    readonly CollectorSettings _settings;
    readonly NpgsqlConnectionStringBuilder _csb;
    readonly IActorRef _region;
    readonly ILoggingAdapter _log = Context.GetLogger();
    readonly RepositoryLink _link;
    Dictionary<int, ServerConfig> _known = [];
    bool _loading, _loadAgain, _refreshNext;
    readonly List<ControlRequest> _reloadWaiting = [];
    DateTimeOffset? _lastResync;
    string? _lastError;

    public ITimerScheduler Timers { get; set; } = null!;

    public FleetCoordinator(CollectorSettings settings, NpgsqlConnectionStringBuilder repository, IActorRef region)
    {
        _settings = settings;
        _region = region;
        _csb = PgSession.ForRole(repository, "PoWA collector - coordinator", settings.ConnectTimeout, settings.RepositoryTimeout);
        _link = new RepositoryLink(_csb, settings.ConnectTimeout + settings.RepositoryTimeout);

        Receive<Resync>(_ => StartResync(refresh: false));
        Receive<Reload>(_ =>
        {
            _log.Info("Reload requested by a signal");
            StartResync(refresh: true);
        });
        Receive<ServersLoaded>(OnLoaded);
        Receive<LoadFailed>(OnLoadFailed);
        Receive<GetFleet>(_ => Sender.Tell(new Fleet(_known.Values.OrderBy(s => s.SrvId).ToList(), _lastResync, _lastError)));

        Receive<ControlNotification>(OnNotification);
        Receive<Checked>(OnChecked);
        Receive<StatusesGathered>(OnStatuses);
        Receive<Forced>(f => Answer(f.Request, f.Result.Started ? "OK" : "KO", f.Result.Message));
        Receive<ServerHandedOff>(OnHandedOff);
        Receive<ClusterEvent.MemberRemoved>(OnMemberRemoved);
        Receive<ClusterEvent.CurrentClusterState>(_ => { });
        Receive<ReEnsureTick>(r => ReEnsure(r.SrvId));
        Receive<ListenerState>(_ => { });
        Receive<ReplySent>(_ => { });
    }

    protected override void PreStart()
    {
        _log.Info("FleetCoordinator started; reading powa_servers every {0:F0} s", _settings.ResyncInterval.TotalSeconds);
        Context.ActorOf(NotifyListener.Props(_settings, _csb), "notify-listener");
        Self.Tell(Resync.Instance);
        Timers.StartPeriodicTimer("resync", Resync.Instance, _settings.ResyncInterval);
        try { Cluster.Get(Context.System).Subscribe(Self, typeof(ClusterEvent.MemberRemoved)); }
        catch (Exception) { /* not in a cluster (actor unit tests) */ }
    }

    protected override void PostStop()
    {
        try { Cluster.Get(Context.System).Unsubscribe(Self); }
        catch (Exception) { }
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
        if (ShuttingDown) return;
        if (srvid is { } id)
        {
            if (_known.TryGetValue(id, out var cfg)) _region.Tell(new EnsureCollecting(cfg));
            return;
        }
        foreach (var cfg in _known.Values) _region.Tell(new EnsureCollecting(cfg));
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
        var describe = Dsn.Describe(_csb);
        _link.RunAsync((c, ct) => RepositoryQueries.LoadActiveServersAsync(c, ct)).PipeTo(Self,
            success: servers => new ServersLoaded(servers, refresh),
            failure: e => new LoadFailed($"cannot read powa_servers from the repository {describe}: {PgSession.Describe(e)}"));
    }

    void OnLoaded(ServersLoaded m)
    {
        _loading = false;
        if (_lastError is not null) _log.Info("Repository reachable again");
        _lastError = null;
        _lastResync = DateTimeOffset.UtcNow;
        var current = m.Servers.ToDictionary(s => s.SrvId);
        var send = !ShuttingDown;
        foreach (var cfg in m.Servers)
        {
            if (!_known.TryGetValue(cfg.SrvId, out var old))
                _log.Info("Server {0} ({1}, alias {2}) is active: collecting it every {3} s", cfg.SrvId, cfg.Name, cfg.Alias ?? "-", cfg.Frequency);
            else if (old != cfg)
                _log.Info("Server {0} ({1}) changed: pushing its new configuration", cfg.SrvId, cfg.Name);
            if (send) _region.Tell(new EnsureCollecting(cfg, m.Refresh));
        }
        foreach (var gone in _known.Keys.Where(id => !current.ContainsKey(id)))
        {
            _log.Info("Server {0} was removed or deactivated: stopping its collection", gone);
            if (send) _region.Tell(new StopCollecting(gone));
        }
        _known = current;
        AfterLoad(null);
    }

    void OnLoadFailed(LoadFailed m)
    {
        _loading = false;
        _lastError = m.Error;
        _log.Error(m.Error);
        // Keep the entities we know alive: a repository outage must not stop the fleet.
        ReEnsure(null);
        AfterLoad(m.Error);
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

    // ---- powa-web's protocol -----------------------------------------------------------------

    void OnNotification(ControlNotification n)
    {
        var request = CollectorProtocol.Parse(n.Payload);
        _log.Debug("Received {0} (reply on {1}) from backend {2}", ForLog(request.Command), ForLog(request.Channel), n.SenderPid);
        // Only senders allowed to signal backends (PostgreSQL 14+: pg_signal_backend) or, before 14, to write
        // powa's data may drive the collector.
        _link.RunAsync(async (c, ct) =>
        {
            await using var cmd = new NpgsqlCommand(
                "SELECT CASE WHEN current_setting('server_version_num')::int >= 140000 " +
                "THEN pg_has_role(a.usesysid, 'pg_signal_backend', 'MEMBER') " +
                "ELSE has_table_privilege(a.usesysid, 'public.powa_statements', 'INSERT') END " +
                "FROM pg_stat_activity a WHERE a.pid = $1 AND a.usesysid IS NOT NULL", c)
                { Parameters = { new() { Value = n.SenderPid } } };
            return await cmd.ExecuteScalarAsync(ct) is true;
        }).PipeTo(Self, success: ok => new Checked(request, ok, null), failure: e => new Checked(request, false, PgSession.Describe(e)));
    }

    void OnChecked(Checked c)
    {
        var r = c.Request;
        if (!c.Allowed)
        {
            if (c.Error is not null) _log.Warning("Cannot check who sent {0}: {1}", ForLog(r.Command), c.Error);
            else _log.Warning("Refused {0}: its sender may not drive the collector", ForLog(r.Command));
            Answer(r, "ERROR", "Permission denied");
            return;
        }
        switch (r.Command)
        {
            case "RELOAD":
                _log.Info("RELOAD requested");
                _reloadWaiting.Add(r);
                StartResync(refresh: true);
                break;
            case "WORKERS_STATUS":
                if (!r.WantsReply) return; // as the reference: nothing to do without a channel
                var ids = r.Args.Count > 0 && r.Args[0].All(char.IsAsciiDigit) && int.TryParse(r.Args[0], out var one)
                    ? (_known.ContainsKey(one) ? [one] : Array.Empty<int>())
                    : _known.Keys.ToArray();
                Context.ActorOf(StatusGatherer.Props(_region, ids, StatusTimeout, Self, r));
                break;
            case "CLUSTER_STATUS":
                // powa-cluster status: statuses and nodes of the servers with from <= srvid <= to.
                if (!r.WantsReply) return;
                var from = r.Args.Count > 0 && int.TryParse(r.Args[0], out var f) ? f : int.MinValue;
                var to = r.Args.Count > 1 && int.TryParse(r.Args[1], out var t) ? t : int.MaxValue;
                Context.ActorOf(StatusGatherer.Props(_region, _known.Keys.Where(id => id >= from && id <= to).ToArray(),
                    StatusTimeout, Self, r));
                break;
            case "FORCE_SNAPSHOT":
                if (r.Args.Count < 1 || !int.TryParse(r.Args[0], out var srvid) || srvid <= 0)
                {
                    Answer(r, "KO", $"invalid server id \"{(r.Args.Count > 0 ? r.Args[0] : "")}\"");
                    return;
                }
                if (!_known.ContainsKey(srvid))
                {
                    Answer(r, "KO", $"server {srvid} is not an active server");
                    return;
                }
                _region.Ask<ForceSnapshotResult>(new ForceSnapshot(srvid), ForceTimeout).PipeTo(Self,
                    success: res => new Forced(r, res),
                    failure: _ => new Forced(r, new ForceSnapshotResult(srvid, false, $"server {srvid} did not answer in time")));
                break;
            default:
                Answer(r, "UNKNOWN", "");
                break;
        }
    }

    void OnStatuses(StatusesGathered g)
    {
        var request = (ControlRequest)g.Tag;
        var json = request.Command == "CLUSTER_STATUS"
            ? CollectorProtocol.ClusterStatusJson(g.Statuses.Values.Select(s => (s.SrvId, s.Status, s.Node)))
            : CollectorProtocol.WorkersJson(g.Statuses.Select(s => KeyValuePair.Create(s.Key, s.Value.Status)));
        Answer(request, "OK", json);
    }

    /// <summary>Replies with pg_notify($1, $2): whatever the channel name or payload holds, nothing is executed.</summary>
    void Answer(ControlRequest r, string status, string data)
    {
        if (!r.WantsReply) return;
        var payload = CollectorProtocol.Reply(r.Command, status, data);
        if (payload is null)
        {
            _log.Warning("Cannot answer a request whose command alone is too long for a NOTIFY payload");
            return;
        }
        var channel = r.Channel;
        var command = r.Command;
        _link.RunAsync(async (c, ct) =>
        {
            await using var cmd = new NpgsqlCommand("SELECT pg_catalog.pg_notify($1, $2)", c)
                { Parameters = { new() { Value = channel }, new() { Value = payload } } };
            await cmd.ExecuteNonQueryAsync(ct);
            return true;
        }).PipeTo(Self, success: _ => new ReplySent(command, null), failure: e =>
        {
            var msg = PgSession.Describe(e);
            return new ReplySent(command, msg);
        });
        Context.System.EventStream.Publish(new ControlHandled(r.Command, payload));
    }

    /// <summary>Anyone may NOTIFY powa_collector: what they send goes to the log short and on one line.</summary>
    static string ForLog(string s)
    {
        var oneLine = new string(s.Select(ch => char.IsControl(ch) ? '?' : ch).ToArray());
        return oneLine.Length <= 64 ? oneLine : oneLine[..61] + "...";
    }

    sealed record ReEnsureTick(int? SrvId);
    sealed record ServersLoaded(IReadOnlyList<ServerConfig> Servers, bool Refresh);
    sealed record LoadFailed(string Error);
    sealed record Checked(ControlRequest Request, bool Allowed, string? Error);
    sealed record Forced(ControlRequest Request, ForceSnapshotResult Result);
    sealed record ReplySent(string Command, string? Error);

    public static Props Props(CollectorSettings settings, NpgsqlConnectionStringBuilder repository, IActorRef region) =>
        Akka.Actor.Props.Create(() => new FleetCoordinator(settings, repository, region));
}
