using Akka.Actor;
using Akka.Event;
using Npgsql;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Control;
using PowaCluster.Collector.Hosting;
using PowaCluster.Collector.Postgres;
using PowaCluster.Collector.Telemetry;

namespace PowaCluster.Collector.Actors;

/// <summary>
/// powa-web's side of the FleetCoordinator, its child: the cluster's one LISTEN powa_collector connection
/// (NotifyListener, its child, behind the NotifyGate they share), who may drive the collector (one query for
/// every sender waiting for its verdict), and the answers (RELOAD through the coordinator, WORKERS_STATUS,
/// CLUSTER_STATUS, FORCE_SNAPSHOT, REFRESH_DB_CAT), on a repository connection that carries nothing else. What
/// it knows of the fleet is what the coordinator tells it (ServersKnown after each read of powa_servers).
/// </summary>
public sealed class ControlDesk : ReceiveActor, IWithTimers
{
    static readonly TimeSpan StatusTimeout = TimeSpan.FromMilliseconds(700);
    static readonly TimeSpan ForceTimeout = TimeSpan.FromSeconds(3);
    // The flood's counts go to the log at most once a minute (LogFlood); this looks whether they are due.
    static readonly TimeSpan FloodReportEvery = TimeSpan.FromSeconds(10);

    readonly TimeProvider _time = NodeServices.Of(Context.System).Time; // the node's clock (NodeServices)
    readonly CollectorMetrics _metrics = NodeServices.Of(Context.System).Metrics;
    DateTime CurrentUtc => _time.GetUtcNow().UtcDateTime;
    readonly CollectorSettings _settings;
    readonly NpgsqlConnectionStringBuilder _csb;
    readonly PowaSql _sql;
    readonly IActorRef _region;
    readonly ILoggingAdapter _log = Context.GetLogger();
    readonly RepositoryLink _link; // permission checks and replies, nothing else
    readonly NotifyGate _gate;     // shared with the NotifyListener child, behind its lock: it drops a flood before it reaches a mailbox
    SortedSet<int> _known = []; // the active servers, as the coordinator last read them
    readonly Dictionary<int, List<(ControlRequest Request, GateTicket Ticket)>> _checking = []; // waiting for their sender's verdict
    bool _checkRunning;
    long _refusedQuietly, _sendersGone, _droppedLogged;
    DateTime _lastFloodLogUtc = DateTime.MinValue, _lastCheckErrorUtc = DateTime.MinValue, _lastReplyErrorUtc = DateTime.MinValue;

    public ITimerScheduler Timers { get; set; } = null!;

    public ControlDesk(CollectorSettings settings, NpgsqlConnectionStringBuilder repository, PowaSql sql, IActorRef region)
    {
        _settings = settings;
        _sql = sql;
        _region = region;
        _csb = PgSession.ForRole(repository, "PoWA collector - coordinator", settings.ConnectTimeout, settings.RepositoryTimeout);
        _link = new RepositoryLink(_csb, settings.ConnectTimeout + settings.RepositoryTimeout);
        _gate = new NotifyGate(_time, _metrics);

        Receive<ServersKnown>(m => _known = new SortedSet<int>(m.SrvIds));
        Receive<ReloadDone>(m =>
        {
            foreach (var r in m.Requests) Answer(r, m.Error is null ? "OK" : "KO", m.Error ?? "OK");
        });
        Receive<ControlNotification>(OnNotification);
        Receive<Checked>(OnChecked);
        Receive<StatusesGathered>(OnStatuses);
        Receive<ServerAnswered>(f => Answer(f.Request, f.Status, f.Message));
        Receive<ReportFlood>(_ => LogFlood());
        Receive<ReplySent>(m =>
        {
            // Once a minute at most: powa-web waits in vain for this answer, and the next ones likely fail alike.
            if (m.Error is not null && CurrentUtc - _lastReplyErrorUtc > TimeSpan.FromMinutes(1))
            {
                _lastReplyErrorUtc = CurrentUtc;
                _log.Warning("The answer to {0} could not be sent on the repository: {1}", m.Command, m.Error);
            }
        });
    }

    protected override void PreStart()
    {
        Context.ActorOf(NotifyListener.Props(_settings, _csb, _gate), "notify-listener");
        Timers.StartPeriodicTimer("flood", ReportFlood.Instance, FloodReportEvery);
    }

    protected override void PostStop() => _link.Dispose();

    // ---- who may drive the collector -----------------------------------------------------------

    void OnNotification(ControlNotification n)
    {
        var request = CollectorProtocol.Parse(n.Payload);
        if (_log.IsDebugEnabled)
            _log.Debug("Received {0} (reply on {1}) from backend {2}", ForLog(request.Command), ForLog(request.Channel), n.SenderPid);
        // Only the senders the reference allows may drive the collector: members of pg_signal_backend
        // (PostgreSQL 14+), powa's own roles (PoWA 5), or before 14 with PoWA 4 the roles that may write powa's data.
        if (_gate.Known(n.SenderPid) is { } v)
        {
            _gate.Release(n.Ticket);
            Handle(request, n.SenderPid, v);
            return;
        }
        if (!_checking.TryGetValue(n.SenderPid, out var waiting)) _checking[n.SenderPid] = waiting = [];
        waiting.Add((request, n.Ticket));
        CheckSenders();
    }

    /// <summary>
    /// One query for every sender waiting for its verdict, one at a time: a storm of new backends (pgbench -C)
    /// costs one query per round trip, not one per backend.
    /// </summary>
    void CheckSenders()
    {
        if (_checkRunning || _checking.Count == 0) return;
        _checkRunning = true;
        var pids = _checking.Keys.ToArray();
        var sql = _sql.NotifySenders;
        _link.RunAsync(async (c, ct) =>
        {
            var found = new Dictionary<int, SenderVerdict>();
            var cmd = new NpgsqlCommand(sql, c) { Parameters = { new() { Value = pids } } };
            await using var cmdScope = cmd.ConfigureAwait(false);
            var r = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
            await using var rScope = r.ConfigureAwait(false);
            while (await r.ReadAsync(ct).ConfigureAwait(false))
                found[r.GetInt32(0)] = new SenderVerdict(r.GetFieldValue<uint>(1), r.GetString(2), !r.IsDBNull(3) && r.GetBoolean(3));
            return found;
        }).PipeTo(Self, success: found => new Checked(pids, found, null), failure: e => new Checked(pids, null, PgSession.Describe(e)));
    }

    void OnChecked(Checked c)
    {
        _checkRunning = false;
        foreach (var pid in c.Pids)
        {
            if (!_checking.Remove(pid, out var requests)) continue;
            SenderVerdict? verdict = null;
            if (c.Found?.TryGetValue(pid, out var v) == true) _gate.Learn(pid, (verdict = v).Value);
            foreach (var (request, ticket) in requests)
            {
                _gate.Release(ticket);
                if (verdict is { } known) Handle(request, pid, known);
                else if (c.Error is not null) CannotCheck(request, pid, c.Error);
                else _sendersGone++;   // its backend exited before it could be checked: nobody to answer
            }
        }
        CheckSenders();
        LogFlood();
    }

    /// <summary>The repository could not say who sent it: not answered (no role to answer), logged once a minute.</summary>
    void CannotCheck(ControlRequest r, int pid, string error)
    {
        if (CurrentUtc - _lastCheckErrorUtc < TimeSpan.FromMinutes(1)) return;
        _lastCheckErrorUtc = CurrentUtc;
        _log.Warning("Cannot check who sent {0} (backend {1}), not answered: {2}", ForLog(r.Command), pid, error);
    }

    /// <summary>
    /// A refused request: the role's first refusal is answered and logged, then the role gets no answer for
    /// an hour (counted; NotifyGate drops its backends' next notifications for a few seconds before they cost
    /// anything). Counts go to the log once a minute (LogFlood).
    /// </summary>
    void Refuse(ControlRequest r, int pid, SenderVerdict who)
    {
        _metrics.NotifyRequests.Add(1, new KeyValuePair<string, object?>("outcome", "refused"));
        if (_gate.FirstRefusal(who.Role))
        {
            _log.Warning("Refused {0} from backend {1}: role {2} may not drive the collector (its next requests this hour " +
                         "get no answer; they are counted)", ForLog(r.Command), pid, ForLog(who.RoleName));
            Answer(r, "ERROR", "Permission denied", refused: true);
        }
        else _refusedQuietly++;
        LogFlood();
    }

    void LogFlood()
    {
        var dropped = _gate.Dropped;
        if ((dropped == _droppedLogged && _refusedQuietly == 0 && _sendersGone == 0) || CurrentUtc - _lastFloodLogUtc < TimeSpan.FromMinutes(1)) return;
        _log.Warning("powa_collector NOTIFY flood: {0} notifications dropped (more than {1} waiting, {2} from one role, or " +
                     "{3} from backends not yet checked), {4} refusals not answered, {5} from backends gone before their check, since the last report",
            dropped - _droppedLogged, _gate.MaxPending, _gate.MaxPerRole, _gate.MaxUnchecked, _refusedQuietly, _sendersGone);
        _droppedLogged = dropped;
        _refusedQuietly = 0;
        _sendersGone = 0;
        _lastFloodLogUtc = CurrentUtc;
    }

    void Handle(ControlRequest r, int pid, SenderVerdict who)
    {
        if (!who.Allowed)
        {
            Refuse(r, pid, who);
            return;
        }
        LogFlood();
        switch (r.Command)
        {
            case "RELOAD":
                _log.Info("RELOAD requested");
                Context.Parent.Tell(new ReloadRequested(r));
                break;
            case "WORKERS_STATUS":
                if (!r.WantsReply) return; // as the reference: nothing to do without a channel
                var ids = r.Args.Count > 0 && r.Args[0].All(char.IsAsciiDigit) && int.TryParse(r.Args[0], out var one)
                    ? (_known.Contains(one) ? [one] : Array.Empty<int>())
                    : _known.ToArray();
                Context.ActorOf(StatusGatherer.Props(_region, ids, StatusTimeout, Self, r));
                break;
            case "CLUSTER_STATUS":
                // powa-cluster status: statuses and nodes of the servers with from <= srvid <= to.
                if (!r.WantsReply) return;
                var from = r.Args.Count > 0 && int.TryParse(r.Args[0], out var f) ? f : int.MinValue;
                var to = r.Args.Count > 1 && int.TryParse(r.Args[1], out var t) ? t : int.MaxValue;
                Context.ActorOf(StatusGatherer.Props(_region, _known.Where(id => id >= from && id <= to).ToArray(),
                    StatusTimeout, Self, r));
                break;
            // FORCE_SNAPSHOT and REFRESH_DB_CAT answer with powa-collector 1.3.1's status words and texts.
            case "FORCE_SNAPSHOT":
                {
                    var (srvid, bad) = CollectorProtocol.ParseForceSnapshot(r.Args);
                    if (bad is not null) Answer(r, "ERROR", bad);
                    else AskServer<ForceSnapshotResult>(r, srvid, new ForceSnapshot(srvid), res => (res.Started, res.Message));
                    break;
                }
            case "REFRESH_DB_CAT":
                {
                    var (srvid, dbnames, bad) = CollectorProtocol.ParseRefreshDbCat(r.Args);
                    if (bad is not null) Answer(r, "ERROR", bad);
                    else AskServer<RefreshCatalogsResult>(r, srvid, new RefreshCatalogs(srvid, dbnames), res => (res.Registered, res.Message));
                    break;
                }
            default:
                Answer(r, "UNKNOWN", "");
                break;
        }
    }

    /// <summary>
    /// Asks an active server's entity and answers OK or ERROR with what it says; a server that is not active,
    /// or that does not answer in time, is an ERROR.
    /// </summary>
    void AskServer<TResult>(ControlRequest r, int srvid, IServerMessage ask, Func<TResult, (bool Ok, string Message)> outcome)
    {
        if (!_known.Contains(srvid))
        {
            Answer(r, "ERROR", CollectorProtocol.ServerNotFound(srvid));
            return;
        }
        _region.Ask<TResult>(ask, ForceTimeout).PipeTo(Self,
            success: res =>
            {
                var (ok, message) = outcome(res);
                return new ServerAnswered(r, ok ? "OK" : "ERROR", message);
            },
            failure: _ => new ServerAnswered(r, "ERROR", $"server {srvid} did not answer in time"));
    }

    void OnStatuses(StatusesGathered g)
    {
        var request = (ControlRequest)g.Tag;
        var json = request.Command == "CLUSTER_STATUS"
            ? CollectorProtocol.ClusterStatusJson(g.Statuses.Values.Select(s => (s.SrvId, s.Status, s.Node,
                SpoolBacklog.Of(s.SpooledSnapshots, s.SpooledBytes, s.OldestSpooled, _time.GetUtcNow()))))
            : CollectorProtocol.WorkersJson(g.Statuses.Select(s => KeyValuePair.Create(s.Key, s.Value.Status)));
        Answer(request, "OK", json);
    }

    /// <summary>Replies with pg_notify($1, $2): whatever the channel name or payload holds, nothing is executed.</summary>
    void Answer(ControlRequest r, string status, string data, bool refused = false)
    {
        if (!refused) _metrics.NotifyRequests.Add(1, new KeyValuePair<string, object?>("outcome", "answered"));
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
            var cmd = new NpgsqlCommand("SELECT pg_catalog.pg_notify($1, $2)", c)
            { Parameters = { new() { Value = channel }, new() { Value = payload } } };
            await using var cmdScope = cmd.ConfigureAwait(false);
            await cmd.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
            return true;
        }).PipeTo(Self, success: _ => new ReplySent(command, null), failure: e =>
        {
            var msg = PgSession.Describe(e);
            return new ReplySent(command, msg);
        });
    }

    /// <summary>Anyone may NOTIFY powa_collector: what they send goes to the log short and on one line.</summary>
    static string ForLog(string s) => LogText.OneLine(s, 64);

    public static Props Props(CollectorSettings settings, NpgsqlConnectionStringBuilder repository, PowaSql sql, IActorRef region) =>
        Akka.Actor.Props.Create(() => new ControlDesk(settings, repository, sql, region));

    sealed class ReportFlood { public static readonly ReportFlood Instance = new(); }
    sealed record Checked(int[] Pids, Dictionary<int, SenderVerdict>? Found, string? Error);
    sealed record ServerAnswered(ControlRequest Request, string Status, string Message);
    sealed record ReplySent(string Command, string? Error);
}
