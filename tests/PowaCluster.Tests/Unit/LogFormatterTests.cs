using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using PowaCluster.Host.Startup;
using Xunit;

namespace PowaCluster.Tests.Unit;

/// <summary>A log line from outside Akka is stamped on the node's clock, which a test can set.</summary>
public sealed class LogFormatterTests
{
    sealed class Options(LogFormatterOptions value) : IOptionsMonitor<LogFormatterOptions>
    {
        public LogFormatterOptions CurrentValue => value;
        public LogFormatterOptions Get(string? name) => value;
        public IDisposable? OnChange(Action<LogFormatterOptions, string?> listener) => null;
    }

    [Theory]
    [InlineData(false, "2031-02-03T04:05:06.789Z WARN  [PowaCluster.Test] hello")]
    [InlineData(true, "\"2031-02-03T04:05:06.789Z\"")]
    public void A_line_from_outside_Akka_takes_the_time_of_the_nodes_clock(bool json, string expected)
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2031, 2, 3, 4, 5, 6, 789, TimeSpan.Zero));
        using var formatter = new LogFormatter(new Options(new LogFormatterOptions { Json = json }), time);
        var writer = new StringWriter();
        formatter.Write(new LogEntry<string>(LogLevel.Warning, "PowaCluster.Test", new EventId(0), "hello", null, (s, _) => s), null, writer);
        Assert.Contains(expected, writer.ToString());
    }
}
