using Akka.Actor;
using Akka.Event;
using Npgsql;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Postgres;

namespace PowaCluster.Collector.Actors;

/// <summary>
/// Cluster singleton. Reads the active servers (powa_servers with id > 0 and frequency > 0) at start and at
/// every resync, sends every one an idempotent EnsureCollecting through the shard region (which starts,
/// updates or keeps alive its entity), and tells the ones that disappeared to stop. It holds one persistent
/// repository connection of its own.
/// </summary>
public sealed class FleetCoordinator : ReceiveActor, IWithTimers
{
    public const string Version = "0.1.0";

    readonly CollectorSettings _settings;
    readonly NpgsqlConnectionStringBuilder _csb;
    readonly IActorRef _region;
    readonly ILoggingAdapter _log = Context.GetLogger();
    Dictionary<int, ServerConfig> _known = [];
    NpgsqlConnection? _conn;
    bool _loading;
    DateTimeOffset? _lastResync;
    string? _lastError;

    public ITimerScheduler Timers { get; set; } = null!;

    public FleetCoordinator(CollectorSettings settings, NpgsqlConnectionStringBuilder repository, IActorRef region)
    {
        _settings = settings;
        _region = region;
        _csb = PgSession.ForRole(repository, $"PoWA collector - main thread (powa-cluster {Version})",
            settings.ConnectTimeout, settings.RepositoryTimeout);

        Receive<Resync>(_ => StartResync());
        Receive<ServersLoaded>(OnLoaded);
        Receive<LoadFailed>(OnLoadFailed);
        Receive<GetFleet>(_ => Sender.Tell(new Fleet(_known.Values.OrderBy(s => s.SrvId).ToList(), _lastResync, _lastError)));
    }

    protected override void PreStart()
    {
        _log.Info("FleetCoordinator started; reading powa_servers every {0:F0} s", _settings.ResyncInterval.TotalSeconds);
        Self.Tell(Resync.Instance);
        Timers.StartPeriodicTimer("resync", Resync.Instance, _settings.ResyncInterval);
    }

    protected override void PostStop()
    {
        _conn?.Dispose();
        _conn = null;
    }

    void StartResync()
    {
        if (_loading) return;
        _loading = true;
        var conn = _conn;
        var csb = _csb;
        var timeout = _settings.ConnectTimeout + _settings.RepositoryTimeout;
        LoadAsync(conn, csb, timeout).PipeTo(Self,
            success: r => new ServersLoaded(r.Conn, r.Servers),
            failure: e => new LoadFailed(conn, $"cannot read powa_servers from the repository {Dsn.Describe(csb)}: {PgSession.Describe(e)}"));
    }

    static async Task<(NpgsqlConnection Conn, IReadOnlyList<ServerConfig> Servers)> LoadAsync(
        NpgsqlConnection? conn, NpgsqlConnectionStringBuilder csb, TimeSpan timeout)
    {
        using var cts = PgSession.Timeout(timeout);
        if (conn is null || PgSession.IsBroken(conn))
        {
            if (conn is not null) await conn.DisposeAsync();
            conn = await PgSession.OpenAsync(csb, cts.Token);
        }
        return (conn, await RepositoryQueries.LoadActiveServersAsync(conn, cts.Token));
    }

    void OnLoaded(ServersLoaded m)
    {
        _loading = false;
        _conn = m.Conn;
        if (_lastError is not null) _log.Info("Repository reachable again");
        _lastError = null;
        _lastResync = DateTimeOffset.UtcNow;
        var current = m.Servers.ToDictionary(s => s.SrvId);
        foreach (var cfg in m.Servers)
        {
            if (!_known.TryGetValue(cfg.SrvId, out var old))
                _log.Info("Server {0} ({1}, alias {2}) is active: collecting it every {3} s", cfg.SrvId, cfg.Name, cfg.Alias ?? "-", cfg.Frequency);
            else if (old != cfg)
                _log.Info("Server {0} ({1}) changed: pushing its new configuration", cfg.SrvId, cfg.Name);
            _region.Tell(new EnsureCollecting(cfg));
        }
        foreach (var gone in _known.Keys.Where(id => !current.ContainsKey(id)))
        {
            _log.Info("Server {0} was removed or deactivated: stopping its collection", gone);
            _region.Tell(new StopCollecting(gone));
        }
        _known = current;
    }

    void OnLoadFailed(LoadFailed m)
    {
        _loading = false;
        if (m.Conn is not null && PgSession.IsBroken(m.Conn)) { m.Conn.Dispose(); if (ReferenceEquals(m.Conn, _conn)) _conn = null; }
        _lastError = m.Error;
        _log.Error(m.Error);
        // Keep the entities we know alive: a repository outage must not stop the fleet.
        foreach (var cfg in _known.Values) _region.Tell(new EnsureCollecting(cfg));
    }

    sealed record ServersLoaded(NpgsqlConnection Conn, IReadOnlyList<ServerConfig> Servers);
    sealed record LoadFailed(NpgsqlConnection? Conn, string Error);

    public static Props Props(CollectorSettings settings, NpgsqlConnectionStringBuilder repository, IActorRef region) =>
        Akka.Actor.Props.Create(() => new FleetCoordinator(settings, repository, region));
}
