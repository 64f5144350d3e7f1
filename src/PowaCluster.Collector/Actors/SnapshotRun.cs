using System.Diagnostics;
using Akka.Actor;
using PowaCluster.Collector.Postgres;
using PowaCluster.Collector.Spooling;
using PowaCluster.Collector.Staging;

namespace PowaCluster.Collector.Actors;

/// <summary>
/// The stage is complete; the parent owns it from now on. Spooled: it is on the node's disk too (the server
/// spools), and the memory stage can go; SpoolError: it was to be spooled and could not be (it is in memory
/// only).
/// </summary>
public sealed record SnapshotRead(long Sequence, SnapshotStage Stage, TimeSpan Duration, SpoolEntry? Spooled = null, string? SpoolError = null);

/// <summary>The read failed: the remote connection cannot be trusted any more (Error says why, without password).</summary>
public sealed record SnapshotReadFailed(long Sequence, string Error);

/// <summary>
/// One snapshot's read, a child of its ServerCollector: every datasource off the remote into a stage, as one
/// task on the server's connection, then SnapshotRead (or SnapshotReadFailed) to the parent, and it stops.
/// A hung remote holds this actor and its server's connection, nothing else: no writer, no repository
/// transaction. Stopped early (its server stops), it cancels the read and frees the stage once the read
/// has let go of it.
/// </summary>
public sealed class SnapshotRun : ReceiveActor
{
    readonly CancellationTokenSource _abort = new();
    SnapshotStage? _stage;
    Task _read = Task.CompletedTask;

    readonly Func<Task<(SpoolEntry? Spooled, string? SpoolError)>> _start;
    readonly Stopwatch _sw = new();

    /// <param name="spool">set when the server spools (its repository is down, or it has a backlog): the stage
    /// is written there, fsynced, before the remote's cleanups run</param>
    public SnapshotRun(RemoteConnection remote, SnapshotStage stage, SnapshotJob job, ServerSpool? spool = null, long sequence = 0)
    {
        _stage = stage;
        var abort = _abort.Token;
        _start = () => remote.RunAsync(async c =>
        {
            SpoolEntry? spooled = null;
            string? spoolError = null;
            await SnapshotReader.ReadAsync(c, job, stage, abort, spool is null ? null : async st =>
            {
                try { (spooled, _) = await spool.WriteAsync(st, sequence, abort).ConfigureAwait(false); }
                catch (SpoolException e) { spoolError = e.Message; }
            }, errors =>
            {
                if (spooled is not { } e || errors.Count == 0) return;
                try { SpoolFile.AppendErrors(e.Path, errors); }
                catch (SpoolException x) { spoolError = x.Message; } // stored without the cleanup's errors, which are logged
            }).ConfigureAwait(false);
            return (spooled, spoolError);
        });

        Receive<Finished>(f =>
        {
            if (f.Error is null)
            {
                Context.Parent.Tell(new SnapshotRead(sequence, _stage!, f.Duration, f.Spooled, f.SpoolError));
                _stage = null; // handed over
            }
            else Context.Parent.Tell(new SnapshotReadFailed(sequence, Describe(f.Error, job.CallTimeout)));
            Context.Stop(Self);
        });
    }

    sealed record Finished(Exception? Error, TimeSpan Duration, SpoolEntry? Spooled, string? SpoolError);

    static string Describe(Exception e, TimeSpan callTimeout) => e switch
    {
        StageException or TimeoutException => e.Message,
        OperationCanceledException or Npgsql.NpgsqlException { InnerException: TimeoutException } =>
            $"the remote server did not answer within {callTimeout.TotalSeconds:F0} s",
        Npgsql.PostgresException => $"remote error: {PgSession.Describe(e)}",
        _ => $"lost the connection to the remote server: {PgSession.Describe(e)}",
    };

    /// <summary>The read starts once the actor does (not in its constructor: a failed start is the actor's, supervised).</summary>
    protected override void PreStart()
    {
        _sw.Start();
        var read = _start();
        _read = read;
        var sw = _sw;
        read.PipeTo(Self, success: r => new Finished(null, sw.Elapsed, r.Spooled, r.SpoolError),
            failure: e => new Finished(e, sw.Elapsed, null, null));
    }

    protected override void PostStop()
    {
        _abort.Cancel();
        if (_stage is { } stage) _read.ContinueWith(_ => stage.Dispose(), TaskScheduler.Default);
        _read.ContinueWith(_ => _abort.Dispose(), TaskScheduler.Default);
    }

    public static Props Props(RemoteConnection remote, SnapshotStage stage, SnapshotJob job, ServerSpool? spool = null, long sequence = 0) =>
        Akka.Actor.Props.Create(() => new SnapshotRun(remote, stage, job, spool, sequence));
}
