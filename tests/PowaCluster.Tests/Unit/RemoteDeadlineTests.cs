using System.Diagnostics;
using Npgsql;
using PowaCluster.Collector.Postgres;
using PowaCluster.Tests.Support;
using Xunit;

namespace PowaCluster.Tests.Unit;

/// <summary>
/// RemoteDeadline breaks a connection through two Npgsql internals; an Npgsql upgrade that renames them
/// must fail here, not silently fall back to a slower close.
/// </summary>
[Collection(LabCollection.Name)]
public sealed class RemoteDeadlineTests(LabFixture fx)
{
    [Fact]
    public async Task A_call_that_outlives_its_deadline_ends_at_once_with_a_timeout()
    {
        await using var conn = new NpgsqlConnection(fx.Lab.Remotes[0].ConnectionString("postgres").ConnectionString);
        await conn.OpenAsync();
        Assert.NotNull(RemoteDeadline.SocketOf(conn)); // the internals it relies on are where it expects them
        var sw = Stopwatch.StartNew();
        var e = await Assert.ThrowsAsync<TimeoutException>(() => RemoteDeadline.RunAsync(conn, TimeSpan.FromSeconds(1), async () =>
        {
            await using var cmd = new NpgsqlCommand("SELECT pg_sleep(30)", conn);
            return await cmd.ExecuteNonQueryAsync();
        }));
        Assert.Contains("did not answer within 1 s", e.Message);
        Assert.InRange(sw.Elapsed.TotalSeconds, 0.9, 5);
        Assert.True(PgSession.IsBroken(conn));
    }
}
