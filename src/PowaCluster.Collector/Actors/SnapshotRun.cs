using System.Diagnostics;
using Akka.Actor;
using PowaCluster.Collector.Postgres;
using PowaCluster.Collector.Staging;

namespace PowaCluster.Collector.Actors;

/// <summary>The stage is complete; the parent owns it from now on.</summary>
public sealed record SnapshotRead(SnapshotStage Stage, TimeSpan Duration);

/// <summary>The read failed: the remote connection cannot be trusted any more (Error says why, without password).</summary>
public sealed record SnapshotReadFailed(string Error);

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

    public SnapshotRun(RemoteConnection remote, SnapshotStage stage, SnapshotJob job)
    {
        _stage = stage;
        var sw = Stopwatch.StartNew();
        var abort = _abort.Token;
        var read = remote.RunAsync(async c =>
        {
            await SnapshotReader.ReadAsync(c, job, stage, abort).ConfigureAwait(false);
            return true;
        });
        _read = read;
        read.PipeTo(Self, success: _ => new Finished(null, sw.Elapsed), failure: e => new Finished(e, sw.Elapsed));

        Receive<Finished>(f =>
        {
            if (f.Error is null)
            {
                Context.Parent.Tell(new SnapshotRead(_stage!, f.Duration));
                _stage = null; // handed over
            }
            else Context.Parent.Tell(new SnapshotReadFailed(Describe(f.Error, job.CallTimeout)));
            Context.Stop(Self);
        });
    }

    sealed record Finished(Exception? Error, TimeSpan Duration);

    static string Describe(Exception e, TimeSpan callTimeout) => e switch
    {
        StageException or TimeoutException => e.Message,
        OperationCanceledException or Npgsql.NpgsqlException { InnerException: TimeoutException } =>
            $"the remote server did not answer within {callTimeout.TotalSeconds:F0} s",
        Npgsql.PostgresException => $"remote error: {PgSession.Describe(e)}",
        _ => $"lost the connection to the remote server: {PgSession.Describe(e)}",
    };

    protected override void PostStop()
    {
        _abort.Cancel();
        if (_stage is { } stage) _read.ContinueWith(_ => stage.Dispose(), TaskScheduler.Default);
        _read.ContinueWith(_ => _abort.Dispose(), TaskScheduler.Default);
    }

    public static Props Props(RemoteConnection remote, SnapshotStage stage, SnapshotJob job) =>
        Akka.Actor.Props.Create(() => new SnapshotRun(remote, stage, job));
}
