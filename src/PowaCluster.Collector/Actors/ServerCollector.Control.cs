using Akka.Actor;
using Akka.Event;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Postgres;
using PowaCluster.Collector.Sharding;

using PowaCluster.Collector.Telemetry;

namespace PowaCluster.Collector.Actors;

/// <summary>
/// What a ServerCollector answers in every state (ServerCollector.cs has the states): the coordinator's
/// EnsureCollecting and its config changes, StopCollecting, hand-off and the lease; status and
/// FORCE_SNAPSHOT; stopping.
/// </summary>
public sealed partial class ServerCollector
{
    // ---- what every state answers -------------------------------------------------------------

    void Common()
    {
        Receive<EnsureCollecting>(OnEnsure);
        Receive<ServerRead>(OnRowRead);
        Receive<RetryRead>(_ => ReadRow());
        Receive<GetServerStatus>(_ => Sender.Tell(_record.ToStatus(_srvId, _node, _stopping)));
        Receive<ForceSnapshot>(m => Sender.Tell(RefusedForce(m.SrvId)));
        // A snapshot's read and its store are answered in every state: the queue is stored through a reconnection.
        Receive<SnapshotRead>(_ => _run is not null && Sender.Equals(_run), OnRead);
        Receive<SnapshotReadFailed>(_ => _run is not null && Sender.Equals(_run), OnReadFailed);
        Receive<SnapshotStored>(r => _storing is { } s && r.Sequence == s.Sequence, OnStored);
        Receive<ErrorsReported>(r => Saw(r.Sequence));
        Receive<SnapshotNotStored>(r => _storing is { } s && r.Sequence == s.Sequence, OnNotStored);
        Receive<QueueSpooled>(OnQueueSpooled);
        Receive<StoreWatchdog>(w => _storing is { } s && w.Sequence == s.Sequence,
            w => OnNotStored(new(_srvId, w.Sequence, "the repository did not answer in time", TimeSpan.Zero)));
        Receive<RefreshCatalogs>(m =>
        {
            if (_stopping)
            {
                Sender.Tell(new RefreshCatalogsResult(m.SrvId, false, $"server {m.SrvId} is stopping"));
                return;
            }
            _refresh = CatalogRefresh.Merge(_refresh, new CatalogRefresh(m.DbNames.ToHashSet()));
            _log.Info("Server {0}: catalogs of {1} to be refreshed during the next snapshot", m.SrvId,
                m.DbNames.Count == 0 ? "every database" : string.Join(", ", m.DbNames));
            Sender.Tell(new RefreshCatalogsResult(m.SrvId, true, "Catalogs will be refreshed during the next snapshot"));
        });
        Receive<StopCollecting>(_ => RequestStop("the server was removed or deactivated"));
        Receive<StopEntity>(_ => HandOffNow());
        Receive<HandOffDeadline>(_ =>
        {
            _log.Warning("Server {0}: its snapshot is still being read {1:F0} s after its shard was handed off: given up, the server goes on on its new node",
                _srvId, (_settings.HandOffTimeout / 2).TotalSeconds);
            Context.Stop(Self);
        });
        Receive<LeaseCheck>(_ =>
        {
            var lease = _settings.ResyncInterval * _settings.EntityLeaseIntervals;
            if (DateTime.UtcNow - _lastEnsureUtc > lease) RequestStop($"no word from the coordinator for {lease.TotalSeconds:F0} s");
        });
        Receive<Connected>(m => m.Conn.Dispose()); // a connection attempt given up (the settings changed meanwhile)
        Receive<ConnectGranted>(m => _ramp.Tell(new ConnectFinished(m.Generation))); // for an attempt given up: its slot back
    }

    /// <summary>Applies a changed powa_servers row; true when it reconnects.</summary>
    bool ApplyConfig(ServerConfig cfg)
    {
        var old = _config;
        _config = cfg;
        if (old.Alias != cfg.Alias) CollectorMetrics.Track(_srvId, cfg.Alias, _record);
        // A row that cannot be collected (a frequency no timer can wait, among others): Connect says why.
        if (old.ConnectionDiffers(cfg) || (cfg.Problem(_settings.ClusterOnLoopback) is not null && old.Problem(_settings.ClusterOnLoopback) is null))
        {
            if (old.ConnectionDiffers(cfg))
                _log.Info("Server {0}: connection settings changed ({1} -> {2}), reconnecting", cfg.SrvId, ServerConfig.Shown(old.Name), ServerConfig.Shown(cfg.Name));
            CloseRemote();
            _failures = 0;
            Connect();
            return true;
        }
        if (old.Frequency != cfg.Frequency && _scheduled)
        {
            _log.Info("Server {0}: frequency changed from {1} s to {2} s", cfg.SrvId, old.Frequency, cfg.Frequency);
            var next = (_record.LastSnapshot?.UtcDateTime ?? DateTime.UtcNow) + Frequency;
            ScheduleAt(next > DateTime.UtcNow ? next : DateTime.UtcNow);
        }
        return false;
    }

    // powa-collector 1.3.1's answers to FORCE_SNAPSHOT, word for word: powa-web 5 shows them.
    const string InProgress = "A snapshot is already in progress";
    const string TooSoon = "Last snapshot was less than 10s. ago";
    const string Started = "Snapshot in progress";


    ForceSnapshotResult Force()
    {
        var id = _srvId;
        if (DateTime.UtcNow - _lastStartUtc < TimeSpan.FromSeconds(10)) return new(id, false, TooSoon);
        StartRead(forced: true);
        return _run is not null ? new(id, true, Started) : new(id, false, _record.Describe(id));
    }

    /// <summary>FORCE_SNAPSHOT when none can start: stopping, one in progress (read or waiting to be stored), or why not.</summary>
    ForceSnapshotResult RefusedForce(int srvid) => new(srvid, false,
        _stopping ? $"server {srvid} is stopping" : Busy ? InProgress : _record.Describe(srvid));

    /// <summary>
    /// Stops now, or once the snapshot being read and those read before are stored (Settle and Disconnected
    /// see _stopping); no new one is read meanwhile.
    /// </summary>
    void RequestStop(string why)
    {
        if (_stopping) return;
        _stopping = true;
        _log.Info("Stopping collection of server {0}: {1}", _srvId, why);
        if (!Busy) Context.Stop(Self);
    }

    /// <summary>
    /// The shard moves (a rebalance, a node that stops): what was read goes to the node's writers at once
    /// (StoreNext), a snapshot being read gets half the hand-off timeout to finish, and the entity stops
    /// well within the hand-off timeout whatever the remote or the repository does.
    /// </summary>
    void HandOffNow()
    {
        if (_handedOff) return;
        _handedOff = true;
        StoreNext();
        RequestStop("its shard is handed off to another node");
        if (_run is not null) Timers.StartSingleTimer("hand-off", HandOffDeadline.Instance, _settings.HandOffTimeout / 2);
    }

    protected override void PostStop()
    {
        _life.Cancel();
        DropQueue();
        if (_spool is not null) _spool.Claimed = false; // what is left there, the node's SpoolKeeper replays
        CollectorMetrics.Untrack(_record);
        if (_handedOff && _srvId > 0) Sharding.HandOff.AskToGoOnElsewhere(Context, _srvId, _rowVersion, _coordinator, _random);
        CloseRemote();
    }
}
