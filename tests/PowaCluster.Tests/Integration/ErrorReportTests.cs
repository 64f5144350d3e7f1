using Npgsql;
using PowaCluster.Collector.Postgres;
using PowaCluster.Host.Startup;
using PowaCluster.Tests.Support;
using Xunit;

namespace PowaCluster.Tests.Integration;

/// <summary>
/// A server's rows while a snapshot is stored, on a real repository: a report of a connection failure never
/// overwrites what a later snapshot stored, and never waits for (or holds up) a store; a DBA's
/// powa_delete_and_purge_server during a store waits for it, and does not deadlock with it.
/// </summary>
[Collection(LabCollection.Name)]
public sealed class ErrorReportTests(LabFixture fx)
{
    async Task<(TestRepository Repo, PowaSql Sql, int SrvId)> SetUpAsync()
    {
        var repo = await fx.NewRepositoryAsync();
        var srvid = await repo.RegisterAsync(fx.Lab.Remotes[0], 30, "errors");
        await using var conn = await OpenAsync(repo);
        return (repo, await RepositoryCheck.PowaOfAsync(conn, repo.ConnectionString, CancellationToken.None), srvid);
    }

    static async Task<NpgsqlConnection> OpenAsync(TestRepository repo)
    {
        var conn = new NpgsqlConnection(repo.ConnectionString.ConnectionString);
        await conn.OpenAsync();
        return conn;
    }

    static async Task<(bool Written, long? Sequence)> ReportAsync(TestRepository repo, PowaSql sql, int srvid, string error, long? seen)
    {
        await using var conn = await OpenAsync(repo);
        return await RepositoryQueries.ReportErrorsAsync(sql, conn, srvid, [error], replace: true, CancellationToken.None, seen);
    }

    [Fact]
    public async Task A_report_that_comes_after_a_newer_snapshot_leaves_that_snapshots_errors()
    {
        var (repo, sql, srvid) = await SetUpAsync();
        long seen;
        await using (var conn = await OpenAsync(repo))
            seen = (await RepositoryQueries.GetLastSnapshotAsync(sql, conn, srvid, CancellationToken.None)).Sequence!.Value;

        Assert.Equal((true, seen), await ReportAsync(repo, sql, srvid, "no connection to remote server", seen));
        Assert.Equal(["no connection to remote server"], await repo.ErrorsAsync(srvid));

        // A snapshot is stored (powa_take_snapshot clears the errors and counts one more), then a report that
        // waited out a hung repository, or that the server's previous node sends late, arrives.
        await repo.ExecAsync("SELECT powa_take_snapshot($1)", srvid);
        Assert.Empty(await repo.ErrorsAsync(srvid));
        Assert.Equal((false, seen + 1), await ReportAsync(repo, sql, srvid, "a stale failure", seen));
        Assert.Empty(await repo.ErrorsAsync(srvid));

        // The reporter that has seen that snapshot, or one that has seen nothing yet, is written.
        Assert.Equal((true, seen + 1), await ReportAsync(repo, sql, srvid, "a new failure", seen + 1));
        Assert.Equal((true, seen + 1), await ReportAsync(repo, sql, srvid, "a first failure", null));
        Assert.Equal(["a first failure"], await repo.ErrorsAsync(srvid));
    }

    [Fact]
    public async Task A_report_never_waits_for_a_store_in_progress()
    {
        var (repo, sql, srvid) = await SetUpAsync();
        await using var store = await OpenAsync(repo);
        await using var tx = await store.BeginTransactionAsync();
        await using (var lockRow = new NpgsqlCommand(sql.LockServer, store) { Parameters = { new() { Value = srvid } } })
        await using (var r = await lockRow.ExecuteReaderAsync()) { while (await r.ReadAsync()) { } }

        await using var conn = await OpenAsync(repo);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30)); // a wait would be the lock's, forever
        Assert.Equal((false, (long?)null), await RepositoryQueries.ReportErrorsAsync(sql, conn, srvid, ["x"], replace: true, cts.Token, null));
        await tx.RollbackAsync();
    }

    [Fact]
    public async Task A_purge_of_the_server_during_a_store_waits_for_it_and_does_not_deadlock()
    {
        var (repo, sql, srvid) = await SetUpAsync();
        await using var store = await OpenAsync(repo);
        await using var tx = await store.BeginTransactionAsync();
        await using (var lockRow = new NpgsqlCommand(sql.LockServer, store) { Parameters = { new() { Value = srvid } } })
        await using (var r = await lockRow.ExecuteReaderAsync()) { while (await r.ReadAsync()) { } }

        // The DBA's purge starts while the store is in progress...
        var purge = repo.ExecAsync("SELECT powa_delete_and_purge_server($1)", srvid);
        await Eventually.HoldsAsync(async () => await repo.ScalarAsync<long>(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%powa_delete_and_purge_server%'") == 1,
            TimeSpan.FromSeconds(10), "the purge waiting for the store");
        // ...which goes on writing rows that reference the server, and commits.
        await using (var insert = new NpgsqlCommand($"INSERT INTO {sql.Q("powa_databases")} (srvid, oid, datname) VALUES ($1, 1, 'db')", store)
        { Parameters = { new() { Value = srvid } } })
            await insert.ExecuteNonQueryAsync();
        await tx.CommitAsync();
        await purge; // a deadlock would fail one of the two
        Assert.Equal(0L, await repo.ScalarAsync<long>("SELECT count(*) FROM powa_servers WHERE id = $1", srvid));
    }
}
