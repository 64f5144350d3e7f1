using Microsoft.Extensions.Time.Testing;
using PowaCluster.Host.Startup;
using Xunit;

namespace PowaCluster.Tests.Unit;

/// <summary>/ready's answer is computed at most once a second, however many ask (a flood costs one computation).</summary>
public sealed class CachedAnswerTests
{
    [Fact]
    public async Task A_flood_of_requests_costs_one_computation_a_second()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        var computations = 0;
        var pending = new TaskCompletionSource<int>();
        var answer = new CachedAnswer<int>(() => { computations++; return pending.Task; }, TimeSpan.FromSeconds(1), time);

        // While the first computation runs, everyone waits for it.
        var waiting = Enumerable.Range(0, 100).Select(_ => answer.GetAsync()).ToList();
        Assert.Equal(1, computations);
        time.Advance(TimeSpan.FromSeconds(5)); // a slow computation is not started again meanwhile
        Assert.Same(waiting[0], answer.GetAsync());
        pending.SetResult(7);
        Assert.All(await Task.WhenAll(waiting), v => Assert.Equal(7, v));

        // Within a second of the last computation's start, its answer; later, a new computation.
        pending = new TaskCompletionSource<int>();
        var second = answer.GetAsync();
        Assert.Equal(2, computations); // the first one started more than a second ago
        pending.SetResult(8);
        Assert.Equal(8, await second);
        time.Advance(TimeSpan.FromMilliseconds(900));
        for (var i = 0; i < 50; i++) Assert.Equal(8, await answer.GetAsync());
        Assert.Equal(2, computations);
        time.Advance(TimeSpan.FromMilliseconds(200));
        pending = new TaskCompletionSource<int>();
        pending.SetResult(9);
        Assert.Equal(9, await answer.GetAsync());
        Assert.Equal(3, computations);
    }
}
