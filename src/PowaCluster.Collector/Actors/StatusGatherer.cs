using Akka.Actor;

namespace PowaCluster.Collector.Actors;

/// <summary>The statuses of some servers, asked of their entities wherever they run.</summary>
public sealed record StatusesGathered(object Tag, IReadOnlyDictionary<int, ServerStatus> Statuses);

/// <summary>
/// One per WORKERS_STATUS request: asks every server's entity through the shard region, waits at most the
/// given time, and reports the servers that did not answer with the status <see cref="NoAnswer"/> rather
/// than leaving them out.
/// </summary>
public sealed class StatusGatherer : ReceiveActor
{
    public const string NoAnswer = "no answer from its collector node";
    readonly HashSet<int> _waiting;
    readonly Dictionary<int, ServerStatus> _got = [];
    readonly IActorRef _replyTo;
    readonly object _tag;

    public StatusGatherer(IActorRef region, IReadOnlyCollection<int> srvids, TimeSpan timeout, IActorRef replyTo, object tag)
    {
        _waiting = srvids.ToHashSet();
        _replyTo = replyTo;
        _tag = tag;
        foreach (var id in _waiting) region.Tell(new GetServerStatus(id));
        Receive<ServerStatus>(s =>
        {
            if (_waiting.Remove(s.SrvId)) _got[s.SrvId] = s;
            if (_waiting.Count == 0) Finish();
        });
        Receive<ReceiveTimeout>(_ => Finish());
        if (_waiting.Count == 0) Finish();
        else SetReceiveTimeout(timeout);
    }

    void Finish()
    {
        foreach (var id in _waiting)
            _got[id] = new ServerStatus(id, NoAnswer, null, null, null, 0, 0);
        _waiting.Clear();
        _replyTo.Tell(new StatusesGathered(_tag, _got));
        Context.Stop(Self);
    }

    public static Props Props(IActorRef region, IReadOnlyCollection<int> srvids, TimeSpan timeout, IActorRef replyTo, object tag) =>
        Akka.Actor.Props.Create(() => new StatusGatherer(region, srvids, timeout, replyTo, tag));
}
