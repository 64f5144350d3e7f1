using System.Reflection;

namespace PowaCluster.Collector.Hosting;

/// <summary>powa-cluster's version: Directory.Build.props' Version, as the build stamped it into this assembly.</summary>
public static class CollectorVersion
{
    public static readonly string Text =
        (typeof(CollectorVersion).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0")
        .Split('+')[0]; // without the source revision the SDK appends
}
