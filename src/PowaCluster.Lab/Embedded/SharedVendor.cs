namespace PowaCluster.Lab.Embedded;

/// <summary>
/// ../shared/vendor beside the checkout, found upward from the build output: the third-party PoWA releases the lab
/// and the tests run (the reference collector, powa-web; scripts/install-deps.sh builds the archivists from it).
/// </summary>
public static class SharedVendor
{
    /// <summary>The directory; null when there is none (then what needs it is skipped or says so).</summary>
    public static string? Directory { get; } = Find();

    /// <summary>A file of it; null when absent.</summary>
    public static string? File(string name) =>
        Directory is { } d && System.IO.File.Exists(Path.Combine(d, name)) ? Path.Combine(d, name) : null;

    static string? Find()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var vendor = Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared", "vendor"));
            if (System.IO.Directory.Exists(vendor)) return vendor;
        }
        return null;
    }
}
