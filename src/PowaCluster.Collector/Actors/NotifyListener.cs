using Akka.Actor;
using Akka.Event;
using Npgsql;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Control;
using PowaCluster.Collector.Postgres;

namespace PowaCluster.Collector.Actors;

/// <summary>
/// Holds the cluster's one LISTEN powa_collector connection (a child of the FleetCoordinator singleton, so
/// it moves with it) and hands every notification its NotifyGate admits to its parent. The connection is checked at least every
/// 10 s and replaced when dropped.
/// </summary>
public sealed class NotifyListener : ReceiveActor, IWithTimers
{
    // Never below a millisecond: Npgsql's WaitAsync takes 0 to mean "wait forever".
    static readonly TimeSpan CheckEvery = TimeSpan.FromSeconds(10);
    readonly NpgsqlConnectionStringBuilder _csb;
    readonly CollectorSettings _settings;
    readonly ILoggingAdapter _log = Context.GetLogger();
    CancellationTokenSource? _stop;
    int _generation;
    bool _wasListening;

    public ITimerScheduler Timers { get; set; } = null!;

    readonly NotifyGate _gate;

    public NotifyListener(CollectorSettings settings, NpgsqlConnectionStringBuilder repository, NotifyGate gate)
    {
        _settings = settings;
        _gate = gate;
        // powa-web's configuration page finds a running collector by this name on the LISTEN connection.
        _csb = PgSession.ForRole(repository, $"PoWA collector - main thread (powa-cluster {Hosting.CollectorVersion.Text})",
            settings.ConnectTimeout, settings.ConnectTimeout);
        Receive<Listen>(_ => StartListening());
        Receive<Ended>(m =>
        {
            if (m.Generation != _generation) return;
            if (_wasListening || m.Error is not null)
                _log.Warning("LISTEN {0} connection lost: {1}; reconnecting", CollectorProtocol.Channel, m.Error ?? "closed");
            _wasListening = false;
            Timers.StartSingleTimer("relisten", Listen.Instance, _settings.RetryMinDelay);
        });
        Receive<Started>(m =>
        {
            if (m.Generation != _generation) return;
            _wasListening = true;
            _log.Info("Listening on channel {0}", CollectorProtocol.Channel);
        });
    }

    protected override void PreStart() => Self.Tell(Listen.Instance);

    protected override void PostStop()
    {
        _stop?.Cancel();
        _stop?.Dispose();
    }

    void StartListening()
    {
        _stop?.Cancel();
        _stop?.Dispose();
        _stop = new CancellationTokenSource();
        var gen = ++_generation;
        var self = Self;
        var parent = Context.Parent;
        var csb = _csb;
        var connectTimeout = _settings.ConnectTimeout;
        var token = _stop.Token;
        var gate = _gate;
        _ = Task.Run(async () =>
        {
            string? error = null;
            try
            {
                await ListenLoop(csb, connectTimeout, gen, self, parent, gate, token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested) { return; }
            catch (Exception e) { error = PgSession.Describe(e); }
            self.Tell(new Ended(gen, error));
        });
    }

    /// <summary>LISTEN, then wait for notifications; every 10 s without one, prove the connection alive.</summary>
    static async Task ListenLoop(NpgsqlConnectionStringBuilder csb, TimeSpan connectTimeout, int gen,
        IActorRef self, IActorRef parent, NotifyGate gate, CancellationToken token)
    {
        NpgsqlConnection conn;
        using (var cts = CancellationTokenSource.CreateLinkedTokenSource(token))
        {
            cts.CancelAfter(connectTimeout + connectTimeout);
            conn = await PgSession.OpenAsync(csb, cts.Token).ConfigureAwait(false);
        }
        await using (conn)
        {
            conn.Notification += (_, e) =>
            {
                // Beyond the gate's bounds a notification is dropped here (counted), before it costs anything.
                if (e.Channel == CollectorProtocol.Channel && gate.TryAdmit(e.PID, out var ticket))
                    parent.Tell(new ControlNotification(ticket, e.Payload));
            };
            await PgSession.ExecAsync(conn, $"LISTEN {CollectorProtocol.Channel}", token).ConfigureAwait(false);
            self.Tell(new Started(gen));
            while (!token.IsCancellationRequested)
            {
                if (!await conn.WaitAsync(CheckEvery, token).ConfigureAwait(false))
                {
                    using var check = CancellationTokenSource.CreateLinkedTokenSource(token);
                    check.CancelAfter(CheckEvery);
                    await PgSession.ExecAsync(conn, "SELECT 1", check.Token).ConfigureAwait(false);
                }
            }
        }
    }

    sealed record Listen { public static readonly Listen Instance = new(); }
    sealed record Started(int Generation);
    sealed record Ended(int Generation, string? Error);

    public static Props Props(CollectorSettings settings, NpgsqlConnectionStringBuilder repository, NotifyGate gate) =>
        Akka.Actor.Props.Create(() => new NotifyListener(settings, repository, gate));
}
