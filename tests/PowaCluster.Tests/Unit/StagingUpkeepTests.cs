using PowaCluster.Collector.Scheduling;
using Xunit;

namespace PowaCluster.Tests.Unit;

/// <summary>
/// When the writer pool vacuums the staging tables (StagingUpkeep): an interval after the first store, then an
/// interval after the previous vacuum began, only with stores since, one at a time; never with a zero interval.
/// Times are given, no clock.
/// </summary>
public sealed class StagingUpkeepTests
{
    static readonly DateTime T0 = new(2031, 3, 4, 5, 6, 7, DateTimeKind.Utc);
    static readonly TimeSpan Ten = TimeSpan.FromSeconds(10);

    [Fact]
    public void A_vacuum_is_due_an_interval_after_the_first_store_then_after_the_previous_one_began()
    {
        var u = new StagingUpkeep(Ten);
        Assert.False(u.Stored(T0));
        Assert.False(u.Stored(T0.AddSeconds(9)));
        Assert.True(u.Stored(T0.AddSeconds(10)));
        u.Started(T0.AddSeconds(10));
        Assert.False(u.Finished(T0.AddSeconds(11))); // nothing stored meanwhile
        Assert.False(u.Stored(T0.AddSeconds(19)));
        Assert.True(u.Stored(T0.AddSeconds(20)));
    }

    [Fact]
    public void Never_two_at_once_and_stores_during_a_long_one_make_the_next_due_when_it_ends()
    {
        var u = new StagingUpkeep(Ten);
        u.Stored(T0);
        Assert.True(u.Stored(T0.AddSeconds(10)));
        u.Started(T0.AddSeconds(10));
        Assert.False(u.Stored(T0.AddSeconds(25))); // still running: not another
        Assert.True(u.Finished(T0.AddSeconds(30)));
    }

    [Fact]
    public void Without_stores_none_is_due_and_a_zero_interval_never_vacuums()
    {
        var u = new StagingUpkeep(Ten);
        u.Stored(T0);
        u.Started(T0.AddSeconds(10));
        Assert.False(u.Finished(T0.AddHours(1)));
        var never = new StagingUpkeep(TimeSpan.Zero);
        Assert.False(never.Stored(T0));
        Assert.False(never.Stored(T0.AddHours(1)));
    }
}
