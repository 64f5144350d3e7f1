using System.Text;
using PowaCluster.Collector.Actors;

namespace PowaCluster.Collector.Serialization;

/// <summary>
/// The wire format of powa-cluster 0.1.0 (BinaryWriter: a short manifest per type, its fields in a fixed
/// order, little-endian numbers, length-prefixed UTF-8 strings, nothing left over). Read always; written only
/// while a 0.1.0 node is in the cluster (WireFormats), so that a rollout from it mixes the versions. It goes
/// once no supported rollout starts from 0.1.0 (docs/architecture.md, "Wire format").
/// </summary>
static class LegacyWire
{
    /// <summary>Whether 0.1.0 had this message.</summary>
    public static bool Knows(IWireMessage o) =>
        o is EnsureCollecting or StopCollecting or GetServerStatus or ServerStatus or ForceSnapshot or ForceSnapshotResult
            or RefreshCatalogs or RefreshCatalogsResult or ServerHandedOff or Reload;

    /// <summary>The manifests 0.1.0 reads; none of them contains ':', which every later manifest does.</summary>
    public static string Manifest(IWireMessage o) => o switch
    {
        EnsureCollecting => "ensure",
        StopCollecting => "stop",
        GetServerStatus => "status?",
        ServerStatus => "status",
        ForceSnapshot => "force",
        ForceSnapshotResult => "forced",
        RefreshCatalogs => "refresh",
        RefreshCatalogsResult => "refreshed",
        ServerHandedOff => "handed-off",
        Reload => "reload",
        _ => throw new ArgumentException($"{o.GetType().Name} has no wire format in powa-cluster 0.1.0"),
    };

    public static byte[] ToBinary(IWireMessage o)
    {
        using var ms = new MemoryStream();
        using (var w = new BinaryWriter(ms, Encoding.UTF8, leaveOpen: true))
        {
            switch (o)
            {
                case EnsureCollecting m: w.Write(m.SrvId); w.Write(m.RowVersion); w.Write(m.Refresh); break;
                case StopCollecting m: w.Write(m.SrvId); break;
                case GetServerStatus m: w.Write(m.SrvId); break;
                case ServerStatus m:
                    w.Write(m.SrvId); w.Write(m.Status); Opt(w, m.Node);
                    w.Write(m.LastSnapshot is { } t ? t.ToUnixTimeMilliseconds() : long.MinValue);
                    Opt(w, m.LastError); w.Write(m.Snapshots); w.Write(m.FailedSnapshots);
                    w.Write(m.SpooledSnapshots); w.Write(m.SpooledBytes);
                    w.Write(m.OldestSpooled is { } oldest ? oldest.ToUnixTimeMilliseconds() : long.MinValue);
                    break;
                case ForceSnapshot m: w.Write(m.SrvId); break;
                case ForceSnapshotResult m: w.Write(m.SrvId); w.Write(m.Started); w.Write(m.Message); break;
                case RefreshCatalogs m:
                    w.Write(m.SrvId); w.Write(m.DbNames.Count);
                    foreach (var d in m.DbNames) w.Write(d);
                    break;
                case RefreshCatalogsResult m: w.Write(m.SrvId); w.Write(m.Registered); w.Write(m.Message); break;
                case ServerHandedOff m: w.Write(m.SrvId); break;
                case Reload: break;
                default: throw new ArgumentException($"{o.GetType().Name} has no wire format in powa-cluster 0.1.0");
            }
        }
        return ms.ToArray();
    }

    /// <summary>Null: not a manifest of this format.</summary>
    public static IWireMessage? FromBinary(byte[] bytes, string manifest)
    {
        using var r = new BinaryReader(new MemoryStream(bytes, writable: false), Encoding.UTF8);
        IWireMessage? m = manifest switch
        {
            "ensure" => new EnsureCollecting(r.ReadInt32(), r.ReadString(), r.ReadBoolean()),
            "stop" => new StopCollecting(r.ReadInt32()),
            "status?" => new GetServerStatus(r.ReadInt32()),
            "status" => new ServerStatus(r.ReadInt32(), r.ReadString(), Opt(r),
                r.ReadInt64() is var t && t != long.MinValue ? DateTimeOffset.FromUnixTimeMilliseconds(t) : null,
                Opt(r), r.ReadInt64(), r.ReadInt64(), r.ReadInt32(), r.ReadInt64(),
                r.ReadInt64() is var oldest && oldest != long.MinValue ? DateTimeOffset.FromUnixTimeMilliseconds(oldest) : null),
            "force" => new ForceSnapshot(r.ReadInt32()),
            "forced" => new ForceSnapshotResult(r.ReadInt32(), r.ReadBoolean(), r.ReadString()),
            "refresh" => ReadRefresh(r),
            "refreshed" => new RefreshCatalogsResult(r.ReadInt32(), r.ReadBoolean(), r.ReadString()),
            "handed-off" => new ServerHandedOff(r.ReadInt32()),
            "reload" => Reload.Instance,
            _ => null,
        };
        if (m is not null && r.BaseStream.Position != bytes.Length)
            throw new SerializationException($"powa-cluster 0.1.0 message \"{manifest}\": {bytes.Length - r.BaseStream.Position} bytes left over");
        return m;
    }

    static RefreshCatalogs ReadRefresh(BinaryReader r)
    {
        var id = r.ReadInt32();
        var n = r.ReadInt32();
        if (n is < 0 or > WireLimits.MaxDatabaseNames) throw new SerializationException($"REFRESH_DB_CAT with {n} database names");
        var names = new List<string>(n);
        for (var i = 0; i < n; i++) names.Add(r.ReadString());
        return new RefreshCatalogs(id, names);
    }

    static void Opt(BinaryWriter w, string? s)
    {
        w.Write(s is not null);
        if (s is not null) w.Write(s);
    }

    static string? Opt(BinaryReader r) => r.ReadBoolean() ? r.ReadString() : null;
}
