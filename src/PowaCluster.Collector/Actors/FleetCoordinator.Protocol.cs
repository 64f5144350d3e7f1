using Akka.Actor;
using Akka.Event;
using Npgsql;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Control;
using PowaCluster.Collector.Postgres;

namespace PowaCluster.Collector.Actors;

/// <summary>The FleetCoordinator's answers to powa-web's NOTIFY protocol (the rest is in FleetCoordinator.cs).</summary>
public sealed partial class FleetCoordinator
{
    // ---- powa-web's protocol -----------------------------------------------------------------

    void OnNotification(ControlNotification n)
    {
        var request = CollectorProtocol.Parse(n.Payload);
        _log.Debug("Received {0} (reply on {1}) from backend {2}", ForLog(request.Command), ForLog(request.Channel), n.SenderPid);
        // Only the senders the reference allows may drive the collector: members of pg_signal_backend
        // (PostgreSQL 14+), powa's own roles (PoWA 5), or before 14 with PoWA 4 the roles that may write powa's data.
        _link.RunAsync(async (c, ct) =>
        {
            await using var cmd = new NpgsqlCommand(_sql.NotifyAllowed, c)
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
    sealed record ServersLoaded(IReadOnlyList<ServerRow> Servers, bool Refresh);
    sealed record LoadFailed(string Error);
    sealed record Checked(ControlRequest Request, bool Allowed, string? Error);
    sealed record ServerAnswered(ControlRequest Request, string Status, string Message);
    sealed record ReplySent(string Command, string? Error);
}
