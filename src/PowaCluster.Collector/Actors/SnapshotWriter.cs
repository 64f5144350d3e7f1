using System.Diagnostics;
using Akka.Actor;
using Akka.Event;
using Npgsql;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Postgres;
using PowaCluster.Collector.Spooling;
using PowaCluster.Collector.Staging;
using PowaCluster.Collector.Telemetry;

using PowaCluster.Collector.Hosting;

namespace PowaCluster.Collector.Actors;

/// <summary>
/// Holds one persistent repository connection and runs one piece of work at a time, in its own transaction.
/// The pool gives it work only when it is idle. Each piece runs as one task off the actor's thread (its
/// awaits do not come back to the actor: no thread hop per round trip), whose outcome is piped back; the
/// reply goes to whoever asked, and the pool hears the writer is free.
/// </summary>
public sealed class SnapshotWriter : ReceiveActor
{
    readonly WriterSession _session; // the connection and what it remembers: written by the work's task alone

    public SnapshotWriter(CollectorSettings settings, NpgsqlConnectionStringBuilder repository, PowaSql sql, int index, string? identity)
    {
        var node = NodeServices.Of(Context.System);
        var time = node.Time;
        _session = new WriterSession(settings, repository, sql, index, identity, time, node.Metrics, Context.GetLogger());
        Receive<AssignWork>(w =>
        {
            var waited = time.GetUtcNow().UtcDateTime - w.EnqueuedAtUtc;
            var sw = Stopwatch.StartNew();
            _session.RunAsync(w.Work, waited, sw).PipeTo(Self,
                success: done => done,
                failure: e => new WorkDone(w.Work, null, sw.Elapsed, false, new RepositoryOutcome(false, e.Message)));
        });
        Receive<WorkDone>(d =>
        {
            if (d.Reply is { } reply) ReplyTo(d.Work)?.Tell(reply);
            if (d.Outcome is { } outcome) Context.Parent.Tell(outcome);
            Context.Parent.Tell(new WriterIdle(Self, d.Busy, d.Stored));
        });
    }

    static IActorRef? ReplyTo(IWriterWork work) => work switch
    {
        StoreSnapshot s => s.ReplyTo,
        RestoreSchedule r => r.ReplyTo,
        ReadServer r => r.ReplyTo,
        LoadServers l => l.ReplyTo,
        ReportErrors e => e.ReplyTo,
        _ => null,
    };

    protected override void PreStart() => Context.Parent.Tell(new WriterIdle(Self, TimeSpan.Zero, false));

    /// <summary>An open transaction is rolled back by the server when the connection closes; work still running fails quietly.</summary>
    protected override void PostStop() => _session.Close();

    public static Props Props(CollectorSettings settings, NpgsqlConnectionStringBuilder repository, PowaSql sql, int index, string? identity = null) =>
        Akka.Actor.Props.Create(() => new SnapshotWriter(settings, repository, sql, index, identity));
}

/// <summary>The outcome of one piece of work, piped back to its writer.</summary>
internal sealed record WorkDone(IWriterWork Work, object? Reply, TimeSpan Busy, bool Stored, RepositoryOutcome? Outcome);

/// <summary>The repository cannot be reached; the message names it (without password).</summary>
public sealed class RepositoryUnavailableException(string message) : Exception(message);
