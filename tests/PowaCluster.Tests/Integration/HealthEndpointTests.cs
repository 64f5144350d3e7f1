using PowaCluster.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace PowaCluster.Tests.Integration;

/// <summary>/healthz and /ready of a node (--http-port), and /ready following the repository.</summary>
[Collection(LabCollection.Name)]
public sealed class HealthEndpointTests(LabFixture fx, ITestOutputHelper output)
{
    static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    static async Task<(int Status, string Body)> GetAsync(int port, string path)
    {
        using var r = await Http.GetAsync($"http://127.0.0.1:{port}{path}");
        return ((int)r.StatusCode, await r.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Ready_follows_the_repository_and_healthz_the_process()
    {
        var repo = await fx.NewRepositoryAsync();
        await repo.RegisterAsync(fx.Lab.Remotes[0], 2, "ready-1");
        await repo.RegisterAsync(fx.Lab.Remotes[1], 2, "ready-2");
        var port = ClusterTests.FreePorts(1)[0];
        var s = CollectorNode.FastSettings();
        s.HttpPort = port;
        s.HttpHost = "127.0.0.1";
        await using var node = await CollectorNode.StartAsync(repo, s);

        // Ready, and the last line says how many servers the node collects.
        await Eventually.HoldsAsync(async () => await GetAsync(port, "/ready") == (200, "ready\nmember: Up\nrepository: reachable\nservers: 2\n"),
            TimeSpan.FromSeconds(20), "/ready answers 200 with the node's 2 servers");
        Assert.Equal((200, "ok\n"), await GetAsync(port, "/healthz"));

        // The repository refuses this node: its writers' connections are terminated and no new one is allowed.
        await fx.Lab.Repository.ExecAsync("postgres", $"ALTER DATABASE {repo.Database} ALLOW_CONNECTIONS false");
        try
        {
            // Every session of the database (only this node uses it), again at each poll: a connection whose backend
            // passed the database's check before the ALTER but was not yet in pg_stat_activity escapes one pass.
            Task Terminate() => fx.Lab.Repository.ExecAsync("postgres", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity " +
                $"WHERE datname = '{repo.Database}' AND pid <> pg_backend_pid()");
            await Terminate();
            (int Status, string Body) ready = default;
            try
            {
                await Eventually.HoldsAsync(async () => (ready = await GetAsync(port, "/ready")).Status == 503, TimeSpan.FromSeconds(40), "/ready answers 503",
                    Terminate);
            }
            catch (Xunit.Sdk.XunitException e)
            {
                // What /ready said last and which sessions of the node the repository still has.
                throw new Xunit.Sdk.XunitException($"{e.Message}; last /ready: {ready.Status} {ready.Body?.ReplaceLineEndings(" | ")}; " +
                                                   $"sessions: {await fx.Lab.Repository.ScalarAsync<string>("postgres", "SELECT string_agg(format('%s %s %s %s', " +
                                                       $"pid, application_name, state, backend_start), '; ') FROM pg_stat_activity WHERE datname = '{repo.Database}'") ?? "none"}");
            }
            output.WriteLine(ready.Body);
            // Anyone who reaches the port reads it: no host, database, user or error text of the repository.
            Assert.Equal("not ready\nmember: Up\nrepository: unreachable (the node's log says why)\nservers: 2\n", ready.Body);
            Assert.DoesNotContain(repo.Database, ready.Body);
            // Alive all the same: a liveness probe must not restart a node because the repository is down.
            Assert.Equal((200, "ok\n"), await GetAsync(port, "/healthz"));
        }
        finally
        {
            await fx.Lab.Repository.ExecAsync("postgres", $"ALTER DATABASE {repo.Database} ALLOW_CONNECTIONS true");
        }
        await Eventually.HoldsAsync(async () => (await GetAsync(port, "/ready")).Status == 200, TimeSpan.FromSeconds(40), "/ready answers 200 again");
    }
}
