using PowaCluster.Collector.Actors;
using PowaCluster.Collector.Spooling;

namespace PowaCluster.Tests.Support;

/// <summary>The world a ServerState (or its SnapshotDelivery) reads, as a test sets it.</summary>
public sealed class FakeServerSurroundings : IServerSurroundings
{
    public bool RemoteBroken { get; set; }
    public bool RoomToReadAhead { get; set; } = true;
    public BacklogView? Backlog { get; set; }
    public CachedServer? Saved { get; set; }
    public DateTime? OldestElsewhere { get; set; }
}
