using Akka.Util;

namespace PowaCluster.Collector.Serialization;

public enum WireFormat
{
    /// <summary>wire.proto (ProtobufWire), since 0.2.0.</summary>
    Protobuf,

    /// <summary>0.1.0's layout (LegacyWire).</summary>
    Legacy,
}

/// <summary>Which format a node writes, from the versions of the cluster's members (akka.cluster.app-version).</summary>
public static class WireFormats
{
    /// <summary>The first version that reads wire.proto. Older nodes set no app-version: Akka gives them 0.0.0.</summary>
    public static readonly AppVersion FirstProtobuf = AppVersion.Create("0.2.0");

    /// <summary>The first version that reads ServerStateShared, BacklogHeld and BacklogDrained: they are sent to such nodes only.</summary>
    public static readonly AppVersion FirstStateSharing = AppVersion.Create("0.3.0");

    /// <summary>Every member reads what FirstStateSharing brought: the backlog handshake and shared state may be used.</summary>
    public static bool AllShareState(IEnumerable<AppVersion> members) => members.All(v => v.CompareTo(FirstStateSharing) >= 0);

    public static WireFormat For(IEnumerable<AppVersion> members) =>
        members.Any(v => v.CompareTo(FirstProtobuf) < 0) ? WireFormat.Legacy : WireFormat.Protobuf;
}

static class WireLimits
{
    /// <summary>At most this many database names in a REFRESH_DB_CAT (the NOTIFY payload is under 8000 bytes anyway).</summary>
    public const int MaxDatabaseNames = 10_000;
}
