using Akka.Actor;
using Akka.Event;
using PowaCluster.Collector.Postgres;
using PowaCluster.Collector.Staging;
using PowaCluster.Collector.Telemetry;

namespace PowaCluster.Collector.Actors;

/// <summary>
/// A ServerCollector's snapshot reads (ServerCollector.cs has the states, ServerCollector.Store.cs the queue
/// of what was read): at each tick a SnapshotRun child reads the remote into a stage, unless a read is still
/// running or the queue is full.
/// </summary>
public sealed partial class ServerCollector
{
    void OnTick()
    {
        if (_stopping) return;
        if (_run is not null) Skip("read");
        else if (!CanQueue && _spool is null) Skip("stored");
        else StartRead(); // with a full queue (a slow or hung repository), to the spool
    }

    /// <summary>
    /// Room for one more snapshot of this server: none waiting for the repository, or fewer than
    /// MaxQueuedSnapshots while the node's stage memory, or else its stage files, have room.
    /// </summary>
    bool CanQueue => Unstored == 0 || (Unstored < _settings.MaxQueuedSnapshots && _stages.HasRoomToReadAhead);

    /// <summary>A snapshot is being read, waits for the repository or is being stored: stops and changes wait for it.</summary>
    bool Busy => _run is not null || Unstored > 0;

    /// <summary>A tick while the previous snapshot is still being read, or with a full queue: skipped. Logged once a row.</summary>
    void Skip(string phase)
    {
        var text = phase == "read"
            ? $"Server {_srvId}: the previous snapshot is still being read after {(DateTime.UtcNow - _lastStartUtc).TotalSeconds:F0} s; this one is skipped"
            : $"Server {_srvId}: {Unstored} snapshots wait for the repository; this one is skipped";
        if (_skipped++ == 0) _log.Warning(text);
        else _log.Debug(text);
    }

    void StartRead(bool forced = false)
    {
        if (_remote is null || _remote.IsBroken)
        {
            Disconnected(CollectorStatus.NoRemote, "the remote connection was lost", report: false, delay: TimeSpan.Zero);
            return;
        }
        if (_skipped > 1) _log.Info("Server {0}: back on schedule after {1} skipped snapshots", _srvId, _skipped);
        _skipped = 0;
        _lastStartUtc = DateTime.UtcNow;
        var seq = ++_sequence;
        var stage = new SnapshotStage(_srvId, _config.Name, _stages) { ServerVersionNum = _versions!.ServerVersionNum, Forced = forced };
        var job = new SnapshotJob(_plan, _versions.Schemas, _guarded, _refresh, _config, _settings.RemoteTimeout, _settings.ConnectTimeout,
            _settings.RemoteSecurity);
        _runRefresh = _refresh;
        _refresh = null;
        if (_plan.HasCatalogs || job.Refresh is not null)
        {
            // This one reads the catalogs that are due: the next ones do not, until it is stored.
            _catalogSequence = seq;
            _plan = _plan.WithoutCatalogs();
        }
        // While the repository is down, older snapshots wait in the spool, or the queue is full (the repository
        // is slow, or hangs), this one goes to the spool, on the disk before the remote's cleanup runs.
        _run = Context.ActorOf(SnapshotRun.Props(_remote, stage, job, Spooling || !CanQueue ? _spool : null, seq), $"run-{seq}");
        _runSequence = seq;
    }

    void OnRead(SnapshotRead m)
    {
        _run = null;
        CollectorMetrics.SnapshotDuration.Record(m.Duration.TotalSeconds, new KeyValuePair<string, object?>("phase", "read"));
        _guarded = m.Stage.FailedSteps.ToHashSet(); // what failed now gets a savepoint next time
        if (m.SpoolError is not null) SpoolFailed(m.SpoolError);
        if (m.Spooled is not null)
        {
            m.Stage.Dispose(); // on the disk: the memory goes back
            _spooledInOutage++;
            CountSnapshots("spooled");
            if (_repositoryDown) _record.Status = CollectorStatus.NoRepository;
            StoreNext();
            Settle();
            return;
        }
        if (m.SpoolError is not null && Unstored >= _settings.MaxQueuedSnapshots)
        {
            // Read for the spool because the queue is full, and the spool refused it: no room anywhere.
            m.Stage.Dispose();
            _record.Error(CollectorStatus.NoRepository, m.SpoolError, snapshotLost: true);
            CountSnapshots("not_stored");
            Settle();
            return;
        }
        _queue.Enqueue(new Staged(m.Stage, _runSequence));
        if (_log.IsDebugEnabled)
            _log.Debug("Server {0}: snapshot read in {1:F0} ms, {2} bytes{3}; {4} waiting for the repository", _srvId,
                m.Duration.TotalMilliseconds, m.Stage.Length, m.Stage.Spilled ? " (partly in a file)" : "", Unstored);
        StoreNext();
        Settle();
    }

    void OnReadFailed(SnapshotReadFailed m)
    {
        _run = null;
        CountSnapshots("read_failed");
        if (_runRefresh is not null) _refresh = CatalogRefresh.Merge(_refresh, _runRefresh); // for the next snapshot
        if (_catalogSequence == _runSequence) _catalogSequence = 0; // the next stored plan says they are due
        Disconnected(CollectorStatus.NoRemote, m.Error, report: true, snapshotLost: true);
    }
}
