using PowaCluster.Tests.Support;
using Xunit;

namespace PowaCluster.Tests.Integration;

[Collection(LabCollection.Name)]
public sealed class PassfileTests(LabFixture fx, Xunit.Abstractions.ITestOutputHelper output)
{
    /// <summary>powa_servers.password NULL: the password comes from the passfile (PGPASSFILE), as with libpq.</summary>
    [Fact]
    public async Task Null_password_uses_the_passfile()
    {
        var repo = await fx.NewRepositoryAsync();
        var remote = fx.Lab.Remotes[1];
        var srvid = await repo.RegisterAsync(remote, 11, "passfile");
        await repo.ExecAsync("UPDATE powa_servers SET password = NULL WHERE id = $1", srvid);
        var passfile = Path.Combine(Path.GetTempPath(), $"powa-cluster-pgpass-{Guid.NewGuid():N}");
        await File.WriteAllTextAsync(passfile, $"127.0.0.11:{remote.Port}:*:postgres:{remote.Password}\n");
        File.SetUnixFileMode(passfile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var previous = Environment.GetEnvironmentVariable("PGPASSFILE");
        Environment.SetEnvironmentVariable("PGPASSFILE", passfile);
        try
        {
            await using (await CollectorNode.StartAsync(repo))
            {
                await Eventually.HoldsAsync(async () => (await repo.SnapshotTimesAsync(srvid)).Count >= 1,
                    TimeSpan.FromSeconds(30), "a snapshot of the server whose password is in the passfile");
            }
            Assert.Empty(await repo.ErrorsAsync(srvid));
        }
        finally
        {
            Environment.SetEnvironmentVariable("PGPASSFILE", previous);
            File.Delete(passfile);
        }
    }

    /// <summary>
    /// PGPASSWORD in the collector's environment is the repository's: a NULL-password row pointing anywhere does
    /// not get it (here it would be the right password for that server: before, it connected with it).
    /// </summary>
    [Fact]
    public async Task Null_password_never_gets_the_processs_PGPASSWORD()
    {
        var repo = await fx.NewRepositoryAsync();
        var remote = fx.Lab.Remotes[1];
        var control = await repo.RegisterAsync(remote, 13, "with-password");
        var srvid = await repo.RegisterAsync(remote, 12, "null-password");
        await repo.ExecAsync("UPDATE powa_servers SET password = NULL WHERE id = $1", srvid);
        var env = new Dictionary<string, string> { ["PGPASSWORD"] = remote.Password }; // no passfile: HOME is empty
        using var node = StartupErrorTests.Start(env, ["run", "--repository", repo.ConnectionString.ConnectionString]);
        _ = node.StandardOutput.ReadToEndAsync();
        _ = node.StandardError.ReadToEndAsync();
        try
        {
            string[] errors = [];
            await Eventually.HoldsAsync(async () =>
            {
                errors = await repo.ErrorsAsync(srvid);
                return (await repo.SnapshotTimesAsync(control)).Count >= 1 && errors.Length > 0;
            }, TimeSpan.FromSeconds(60), "a snapshot of the server with a password, an error for the one without");
            Assert.Empty(await repo.SnapshotTimesAsync(srvid));
            output.WriteLine(errors[0]);
            Assert.Contains(errors, e => e.Contains("password", StringComparison.OrdinalIgnoreCase));
        }
        finally { await PowaCluster.Lab.Demo.ProcessStop.TerminateAsync(node, TimeSpan.FromSeconds(60)); }
    }
}
