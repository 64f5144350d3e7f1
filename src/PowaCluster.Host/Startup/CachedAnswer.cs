namespace PowaCluster.Host.Startup;

/// <summary>
/// One answer computed at most once per <c>maxAge</c>, however many ask: callers within that time get the last
/// answer, and callers while it is being computed wait for that same computation. /ready answers anyone who
/// reaches HttpHost; each computation asks the shard region and the writer pool, which also serve the
/// cluster: a flood of requests costs one computation a second.
/// </summary>
public sealed class CachedAnswer<T>(Func<Task<T>> compute, TimeSpan maxAge, TimeProvider? time = null)
{
    readonly TimeProvider _time = time ?? TimeProvider.System;
    readonly Lock _lock = new();
    Task<T>? _current;
    DateTimeOffset _computedAt;

    public Task<T> GetAsync()
    {
        lock (_lock)
        {
            var now = _time.GetUtcNow();
            if (_current is { } c && (!c.IsCompleted || now - _computedAt < maxAge)) return c;
            _computedAt = now;
            return _current = compute();
        }
    }
}
