using Akka.Actor;
using Akka.Event;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Scheduling;
using PowaCluster.Collector.Telemetry;

namespace PowaCluster.Collector.Actors;

/// <summary>
/// A ServerCollector's own powa_servers row (ServerCollector.cs has the states): the coordinator sends the
/// srvid and the row's version, never a connection setting or a password; the entity reads the row through
/// its node's writers when it starts (Loading), when the version changes, and on RELOAD.
/// </summary>
public sealed partial class ServerCollector
{
    /// <summary>
    /// Reads the server's own powa_servers row, password included, through the node's writers: what the
    /// coordinator sends over the network is the srvid and the row's version, never a connection setting.
    /// </summary>
    void Load()
    {
        ReadRow();
        Become(() =>
        {
            Receive<ServerRead>(OnFirstRead);
            Common();
        });
    }

    void ReadRow()
    {
        if (_readingRow) return;
        _readingRow = true;
        _writers.Tell(new ReadServer(_srvId, Self));
    }

    void OnFirstRead(ServerRead m)
    {
        _readingRow = false;
        if (m.Error is not null)
        {
            _failures++;
            _record.Error(CollectorStatus.NoRepository, m.Error, snapshotLost: false);
            var wait = ServerSchedule.Backoff(_failures, _settings.RetryMinDelay, _settings.RetryMaxDelay, _random.NextDouble());
            _log.Warning("Server {0}: cannot read its powa_servers row: {1}; retrying in {2:F0} s", _srvId, m.Error, wait.TotalSeconds);
            Timers.StartSingleTimer("read-row", RetryRead.Instance, wait);
            return;
        }
        if (m.Row is null)
        {
            _log.Info("Server {0} is not active in powa_servers (removed or deactivated): not collecting it", _srvId);
            Context.Stop(Self);
            return;
        }
        _failures = 0;
        FollowRepositoryPowa(m.RepositoryPowa);
        (_config, _rowVersion) = (m.Row.Config, m.Row.RowVersion);
        CollectorMetrics.Track(_srvId, _config.Alias, _record);
        _log.Info("Starting to collect server {0} ({1}) every {2} s", _srvId, ServerConfig.Shown(_config.Name), _config.Frequency);
        Connect();
    }

    /// <summary>Renews the lease; the row is read again when it changed, or on RELOAD.</summary>
    void OnEnsure(EnsureCollecting m)
    {
        _lastEnsureUtc = DateTime.UtcNow;
        if (_stopping) return;
        _refreshAfterRead |= m.Refresh;
        // Without a row yet (its first read failed: the repository was down when the server moved here), every
        // EnsureCollecting tries again: the coordinator sends one as soon as it reads the repository again.
        if (m.RowVersion != _rowVersion || m.Refresh || _config is null) ReadRow();
    }

    /// <summary>The row read again (it changed, or RELOAD): apply it, then RELOAD's own work.</summary>
    void OnRowRead(ServerRead m)
    {
        _readingRow = false;
        var refresh = _refreshAfterRead;
        _refreshAfterRead = false;
        if (_stopping) return;
        if (m.Error is not null)
        {
            // Go on with the row we have; the next EnsureCollecting asks again (the version we know is unchanged).
            _log.Warning("Server {0}: cannot read its powa_servers row again: {1}", _srvId, m.Error);
            return;
        }
        if (m.Row is null)
        {
            RequestStop("it is no longer active in powa_servers");
            return;
        }
        _rowVersion = m.Row.RowVersion;
        FollowRepositoryPowa(m.RepositoryPowa);
        if (m.Row.Config != _config)
        {
            if (_run is not null) _pendingConfig = m.Row.Config; // applied once the read is over
            else if (ApplyConfig(m.Row.Config)) return;
        }
        if (!refresh) return;
        // RELOAD: a server waiting to reconnect tries now; a connected one saves its versions again.
        if (Timers.IsTimerActive("reconnect"))
        {
            _failures = 0;
            Connect();
        }
        else if (_remote is not null && _versions is not null)
            _writers.Tell(new SaveVersions(_srvId, _versions));
    }
}
