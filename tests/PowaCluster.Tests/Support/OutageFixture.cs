using PowaCluster.Lab.Embedded;
using Xunit;

namespace PowaCluster.Tests.Support;

/// <summary>
/// A lab of its own for the tests that stop the repository for minutes (SpoolTests): a repository and one
/// remote, local instances (they are stopped and started by pid). Its own collection, so those minutes run
/// beside the main lab's tests instead of after them.
/// </summary>
public sealed class OutageFixture : IAsyncLifetime
{
    int _databases;

    public PowaLab Lab { get; private set; } = null!;
    public LocalPostgres Repository => (LocalPostgres)Lab.Repository;
    public IPostgresInstance Remote => Lab.Remotes[0];

    public async Task InitializeAsync() => Lab = await PowaLab.StartAsync(remotes: 1, loopbackAddresses: 40, factory: LocalPostgres.Factory);

    public async Task DisposeAsync()
    {
        if (Lab is not null) await Lab.DisposeAsync();
    }

    public async Task<TestRepository> NewRepositoryAsync()
    {
        var name = $"outage_{Interlocked.Increment(ref _databases)}";
        await PowaLab.InstallPowaAsync(Lab.Repository, withStatsExtensions: true, database: name);
        return new TestRepository(Lab, name);
    }
}

[CollectionDefinition(Name)]
public sealed class OutageCollection : ICollectionFixture<OutageFixture>
{
    public const string Name = "Repository outages";
}

/// <summary>A test that mounts a tmpfs (a full disk): skipped, and counted as skipped, where this process cannot mount one.</summary>
public sealed class TmpfsFactAttribute : FactAttribute
{
    public TmpfsFactAttribute()
    {
        if (!Tmpfs.CanMount) Skip = "mounting a tmpfs needs root (CAP_SYS_ADMIN)";
    }
}

/// <summary>A small tmpfs on a temporary directory, unmounted and removed at Dispose.</summary>
public sealed class Tmpfs : IDisposable
{
    public string Path { get; }

    Tmpfs(string path) => Path = path;

    public static bool CanMount => _canMount.Value;
    static readonly Lazy<bool> _canMount = new(() =>
    {
        if (!LocalPostgres.IsRoot) return false;
        try { using var t = Mount(64 * 1024); return true; }
        catch (InvalidOperationException) { return false; }
    });

    public static Tmpfs Mount(long bytes)
    {
        var dir = Directory.CreateTempSubdirectory("powa-cluster-tmpfs-").FullName;
        Run("mount", "-t", "tmpfs", "-o", $"size={bytes}", "tmpfs", dir);
        return new Tmpfs(dir);
    }

    /// <summary>Fills the file system: nothing more can be written to it.</summary>
    public void Fill()
    {
        using var f = new FileStream(System.IO.Path.Combine(Path, "fill"), FileMode.Create);
        var block = new byte[4096];
        try { while (true) f.Write(block); }
        catch (IOException) { /* full */ }
    }

    static void Run(string file, params string[] args)
    {
        using var p = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo(file, args)
        { RedirectStandardError = true, RedirectStandardOutput = true })!;
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{file} {string.Join(' ', args)}: {p.StandardError.ReadToEnd().Trim()}");
    }

    public void Dispose()
    {
        try { Run("umount", Path); Directory.Delete(Path); } catch (Exception) { /* best effort */ }
    }
}
