using Microsoft.Extensions.Time.Testing;
using PowaCluster.Collector.Actors;
using Xunit;

namespace PowaCluster.Tests.Unit;

/// <summary>
/// Whose turn it is to store a server's spooled snapshots when several nodes hold some (BacklogHolders): the
/// oldest first, up to the next oldest anyone holds, nobody while the entity listens, and holders forgotten
/// after their silence. Fake time, no actor.
/// </summary>
public sealed class BacklogHoldersTests
{
    readonly FakeTimeProvider _time = new(new DateTimeOffset(2031, 3, 4, 5, 6, 7, TimeSpan.Zero));
    DateTime At(int seconds) => _time.GetUtcNow().UtcDateTime.AddSeconds(seconds);

    [Fact]
    public void The_oldest_holder_stores_up_to_the_next_oldest_anyone_holds()
    {
        var h = new BacklogHolders<string>(_time);
        Assert.Null(h.Turn(null));
        Assert.True(h.Heard("node-a", At(-300), "keeper-a"));
        Assert.True(h.Heard("node-b", At(-200), "keeper-b"));
        Assert.False(h.Heard("node-b", At(-170), "keeper-b")); // said again, what is left
        Assert.Equal(At(-300), h.OldestElsewhere);

        // The entity holds snapshots from 250 s ago: node-a's older ones go first, up to them.
        Assert.Equal(("keeper-a", (DateTime?)At(-250)), h.Turn(At(-250)));
        // The entity holds none: up to node-b's oldest.
        Assert.Equal(("keeper-a", (DateTime?)At(-170)), h.Turn(null));
        // The entity's own are the oldest: nobody's turn, it stores them itself.
        Assert.Null(h.Turn(At(-400)));

        Assert.True(h.Drained("node-a"));
        Assert.False(h.Drained("node-a"));
        Assert.Equal(("keeper-b", (DateTime?)null), h.Turn(null)); // the only one left: all it holds
    }

    [Fact]
    public void While_listening_nobody_stores_and_a_holder_that_goes_silent_is_forgotten()
    {
        var h = new BacklogHolders<string>(_time);
        Assert.True(h.Listen());
        Assert.False(h.Listen()); // once per entity
        Assert.True(h.Any);
        Assert.Equal(DateTime.MinValue, h.OldestElsewhere); // nothing of the entity's own either
        h.Heard("node-a", At(-60), "keeper-a");
        Assert.Null(h.Turn(null));
        h.Listened();
        Assert.Equal("keeper-a", h.Turn(null)?.Keeper);

        _time.Advance(BacklogHolders<string>.Silence - TimeSpan.FromSeconds(1));
        Assert.Empty(h.Expire());
        h.Heard("node-b", At(-30), "keeper-b");
        _time.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal(["node-a"], h.Expire());
        Assert.Equal("keeper-b", h.Turn(null)?.Keeper);
        Assert.True(h.Drained("node-b"));
        Assert.False(h.Any);
        Assert.Null(h.OldestElsewhere);
    }
}
