using PowaCluster.Collector.Actors;
using Xunit;

namespace PowaCluster.Tests.Unit;

/// <summary>The writers' queue: while the repository hangs, a server's failed reconnections queue one error report, its latest.</summary>
public sealed class WriterQueueTests
{
    [Fact]
    public void A_servers_error_reports_replace_each_other_in_the_queue()
    {
        var pending = new LinkedList<AssignWork>();
        var t0 = new DateTime(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc);
        for (var i = 0; i < 1000; i++)
        {
            SnapshotWriterPool.Add(pending, new ReportErrors(1, [$"failure {i}"]), t0.AddSeconds(i));
            SnapshotWriterPool.Add(pending, new ReportErrors(2, [$"failure {i}"]), t0.AddSeconds(i));
        }
        SnapshotWriterPool.Add(pending, new SaveVersions(1, null!), t0);
        Assert.Equal(3, pending.Count);
        var reports = pending.Select(a => a.Work).OfType<ReportErrors>().ToList();
        Assert.Equal([1, 2], reports.Select(r => r.SrvId));
        Assert.All(reports, r => Assert.Equal("failure 999", r.Errors.Single()));
        Assert.Equal(t0, pending.First!.Value.EnqueuedAtUtc); // in its place, waited since the first
    }
}
