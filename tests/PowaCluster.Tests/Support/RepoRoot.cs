namespace PowaCluster.Tests.Support;

/// <summary>The checkout the tests run from: the directory of PowaCluster.sln above the test binaries.</summary>
public static class RepoRoot
{
    public static readonly string Path = Find();

    static string Find()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(System.IO.Path.Combine(d.FullName, "PowaCluster.sln"))) return d.FullName;
        throw new InvalidOperationException("PowaCluster.sln not found above " + AppContext.BaseDirectory);
    }
}
