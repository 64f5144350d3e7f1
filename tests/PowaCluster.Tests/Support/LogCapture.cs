using System.Collections.Concurrent;
using Akka.Actor;
using Akka.Event;

namespace PowaCluster.Tests.Support;

/// <summary>The messages of an actor system's log events of the given kinds, as published (before the loggers' filters).</summary>
public static class LogCapture
{
    public static ConcurrentQueue<string> Start(ActorSystem system, params Type[] kinds)
    {
        var into = new ConcurrentQueue<string>();
        var listener = system.ActorOf(Props.Create(() => new Collector(into)));
        foreach (var k in kinds) system.EventStream.Subscribe(listener, k);
        return into;
    }

    sealed class Collector : ReceiveActor
    {
        public Collector(ConcurrentQueue<string> into) => Receive<LogEvent>(e => into.Enqueue(e.Message?.ToString() ?? ""));
    }
}
