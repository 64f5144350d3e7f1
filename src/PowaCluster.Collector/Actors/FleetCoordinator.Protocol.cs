using Akka.Actor;
using Akka.Event;
using Npgsql;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Control;
using PowaCluster.Collector.Postgres;

using PowaCluster.Collector.Telemetry;

namespace PowaCluster.Collector.Actors;

/// <summary>The FleetCoordinator's answers to powa-web's NOTIFY protocol (the rest is in FleetCoordinator.cs).</summary>
public sealed partial class FleetCoordinator
{
    // ---- powa-web's protocol -----------------------------------------------------------------

    /// <summary>How long a permission verdict holds for a sending backend (a pid is reused after its backend exits).</summary>
    static readonly TimeSpan VerdictFor = TimeSpan.FromSeconds(5);
    /// <summary>Refusals answered per sending backend and minute; beyond, counted and dropped (a flood gets no reply each).</summary>
    const int RefusalRepliesPerMinute = 10;

    readonly Dictionary<int, (bool Allowed, DateTime UntilUtc)> _verdicts = [];
    readonly Dictionary<int, List<ControlRequest>> _checking = [];   // requests waiting for their sender's verdict
    readonly Dictionary<int, (DateTime MinuteUtc, int Refused)> _refusals = [];
    long _refusedQuietly, _droppedLogged;
    DateTime _lastFloodLogUtc = DateTime.MinValue;

    void OnNotification(ControlNotification n)
    {
        var request = CollectorProtocol.Parse(n.Payload);
        if (_log.IsDebugEnabled)
            _log.Debug("Received {0} (reply on {1}) from backend {2}", ForLog(request.Command), ForLog(request.Channel), n.SenderPid);
        // Only the senders the reference allows may drive the collector: members of pg_signal_backend
        // (PostgreSQL 14+), powa's own roles (PoWA 5), or before 14 with PoWA 4 the roles that may write powa's data.
        // One query per sending backend every few seconds, whatever it sends.
        if (_verdicts.TryGetValue(n.SenderPid, out var v) && v.UntilUtc > DateTime.UtcNow)
        {
            _gate.Release(n.SenderPid);
            Handle(request, n.SenderPid, v.Allowed, null);
            return;
        }
        if (_checking.TryGetValue(n.SenderPid, out var waiting))
        {
            waiting.Add(request);
            return;
        }
        _checking[n.SenderPid] = [request];
        var pid = n.SenderPid;
        _link.RunAsync(async (c, ct) =>
        {
            await using var cmd = new NpgsqlCommand(_sql.NotifyAllowed, c) { Parameters = { new() { Value = pid } } };
            return await cmd.ExecuteScalarAsync(ct) is true;
        }).PipeTo(Self, success: ok => new Checked(pid, ok, null), failure: e => new Checked(pid, false, PgSession.Describe(e)));
    }

    void OnChecked(Checked c)
    {
        if (c.Error is null) _verdicts[c.SenderPid] = (c.Allowed, DateTime.UtcNow + VerdictFor);
        if (_verdicts.Count > 10_000) PruneVerdicts();
        if (!_checking.Remove(c.SenderPid, out var requests)) return;
        foreach (var r in requests)
        {
            _gate.Release(c.SenderPid);
            Handle(r, c.SenderPid, c.Allowed, c.Error);
        }
    }

    void PruneVerdicts()
    {
        var now = DateTime.UtcNow;
        foreach (var pid in _verdicts.Where(kv => kv.Value.UntilUtc <= now).Select(kv => kv.Key).ToList()) _verdicts.Remove(pid);
        foreach (var pid in _refusals.Where(kv => now - kv.Value.MinuteUtc > TimeSpan.FromMinutes(1)).Select(kv => kv.Key).ToList())
            _refusals.Remove(pid);
    }

    /// <summary>
    /// A refused request: answered and logged while its backend has had fewer than 10 refusals this minute (the
    /// first one logged, the rest counted); beyond, dropped. Dropped notifications (NotifyGate) are logged with
    /// them, once a minute.
    /// </summary>
    void Refuse(ControlRequest r, int pid, string? error)
    {
        var now = DateTime.UtcNow;
        var (minute, count) = _refusals.TryGetValue(pid, out var x) && now - x.MinuteUtc < TimeSpan.FromMinutes(1) ? x : (now, 0);
        _refusals[pid] = (minute, count + 1);
        CollectorMetrics.NotifyRequests.Add(1, new KeyValuePair<string, object?>("outcome", "refused"));
        if (count == 0)
        {
            if (error is not null) _log.Warning("Cannot check who sent {0} (backend {1}): {2}", ForLog(r.Command), pid, error);
            else _log.Warning("Refused {0} from backend {1}: its role may not drive the collector (this backend's next refusals this minute are counted, not logged)",
                ForLog(r.Command), pid);
        }
        if (count < RefusalRepliesPerMinute) Answer(r, "ERROR", "Permission denied", refused: true);
        else _refusedQuietly++;
        LogFlood();
    }

    void LogFlood()
    {
        var dropped = _gate.Dropped;
        if ((dropped == _droppedLogged && _refusedQuietly == 0) || DateTime.UtcNow - _lastFloodLogUtc < TimeSpan.FromMinutes(1)) return;
        _log.Warning("powa_collector NOTIFY flood: {0} notifications dropped (more than {1} waiting, or {2} from one backend), " +
                     "{3} refusals not answered, since the last report", dropped - _droppedLogged, _gate.MaxPending, _gate.MaxPerSender, _refusedQuietly);
        _droppedLogged = dropped;
        _refusedQuietly = 0;
        _lastFloodLogUtc = DateTime.UtcNow;
    }

    void Handle(ControlRequest r, int pid, bool allowed, string? error)
    {
        if (!allowed)
        {
            Refuse(r, pid, error);
            return;
        }
        LogFlood();
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
        if (!_known.ContainsKey(srvid))
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
                SpoolBacklog.Of(s.SpooledSnapshots, s.SpooledBytes, s.OldestSpooled))))
            : CollectorProtocol.WorkersJson(g.Statuses.Select(s => KeyValuePair.Create(s.Key, s.Value.Status)));
        Answer(request, "OK", json);
    }

    /// <summary>Replies with pg_notify($1, $2): whatever the channel name or payload holds, nothing is executed.</summary>
    void Answer(ControlRequest r, string status, string data, bool refused = false)
    {
        if (!refused) CollectorMetrics.NotifyRequests.Add(1, new KeyValuePair<string, object?>("outcome", "answered"));
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
    static string ForLog(string s) => LogText.OneLine(s, 64);

    sealed record ReEnsureTick(int? SrvId);
    sealed record ServersLoaded(IReadOnlyList<ServerRow> Servers, bool Refresh);
    sealed record LoadFailed(string Error);
    sealed record Checked(int SenderPid, bool Allowed, string? Error);
    sealed record ServerAnswered(ControlRequest Request, string Status, string Message);
    sealed record ReplySent(string Command, string? Error);
}
