using PowaCluster.Tests.Support;
using Xunit;

namespace PowaCluster.Tests.Integration;

[Collection(LabCollection.Name)]
public sealed class PassfileTests(LabFixture fx)
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
}
