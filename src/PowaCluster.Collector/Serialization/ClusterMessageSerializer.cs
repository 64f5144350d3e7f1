using System.Text;
using Akka.Actor;
using Akka.Serialization;
using PowaCluster.Collector.Actors;

namespace PowaCluster.Collector.Serialization;

/// <summary>
/// Marks the collector's messages that cross the network between nodes (coordinator to entities, entities'
/// answers, hand-off notices, reload). Each is bound to <see cref="ClusterMessageSerializer"/>: an explicit
/// format, field by field, for a closed list of types; none of them carries a secret (an entity reads its own
/// server row, with the password, from the repository).
/// </summary>
public interface IWireMessage;

/// <summary>
/// The wire format of <see cref="IWireMessage"/>s: a short manifest per type and its fields in a fixed
/// order (BinaryWriter: little-endian numbers, length-prefixed UTF-8 strings). An unknown manifest is refused,
/// not guessed: nothing here instantiates a type named by the peer.
/// </summary>
public sealed class ClusterMessageSerializer(ExtendedActorSystem system) : SerializerWithStringManifest(system)
{
    /// <summary>Akka's own serializers use small numbers; ours is fixed for the life of a cluster.</summary>
    public const int Id = 4053;

    public override int Identifier => Id;

    public override string Manifest(object o) => o switch
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
        _ => throw new ArgumentException($"{o.GetType().Name} has no wire format of powa-cluster's"),
    };

    public override byte[] ToBinary(object o)
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
                default: throw new ArgumentException($"{o.GetType().Name} has no wire format of powa-cluster's");
            }
        }
        return ms.ToArray();
    }

    /// <summary>At most this many database names in a REFRESH_DB_CAT (the NOTIFY payload is under 8000 bytes anyway).</summary>
    const int MaxNames = 10_000;

    public override object FromBinary(byte[] bytes, string manifest)
    {
        using var r = new BinaryReader(new MemoryStream(bytes, writable: false), Encoding.UTF8);
        object m = manifest switch
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
            _ => throw new SerializationException($"unknown powa-cluster message manifest \"{manifest}\""),
        };
        if (r.BaseStream.Position != bytes.Length)
            throw new SerializationException($"powa-cluster message \"{manifest}\": {bytes.Length - r.BaseStream.Position} bytes left over");
        return m;
    }

    static RefreshCatalogs ReadRefresh(BinaryReader r)
    {
        var id = r.ReadInt32();
        var n = r.ReadInt32();
        if (n is < 0 or > MaxNames) throw new SerializationException($"REFRESH_DB_CAT with {n} database names");
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

/// <summary>A message that is not what its manifest says.</summary>
public sealed class SerializationException(string message) : Exception(message);
