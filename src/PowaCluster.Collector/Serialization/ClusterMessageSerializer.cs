using Akka.Actor;
using Akka.Cluster;
using Akka.Serialization;

namespace PowaCluster.Collector.Serialization;

/// <summary>
/// Marks the collector's messages that cross the network between nodes (coordinator to entities, entities'
/// answers, hand-off notices, reload). Each is bound to <see cref="ClusterMessageSerializer"/>; none of them
/// carries a secret (an entity reads its own server row, with the password, from the repository).
/// </summary>
public interface IWireMessage;

/// <summary>
/// The wire format of <see cref="IWireMessage"/>s, for a closed list of types: written as wire.proto's
/// messages (ProtobufWire), or as 0.1.0's layout (LegacyWire) while a member of the cluster is a 0.1.0 node
/// (WireFormats); read in either, told apart by the manifest. An unknown manifest is refused, not guessed:
/// nothing here instantiates a type named by the peer.
/// </summary>
public sealed class ClusterMessageSerializer(ExtendedActorSystem system) : SerializerWithStringManifest(system)
{
    /// <summary>Akka's own serializers use small numbers; ours is fixed for the life of a cluster.</summary>
    public const int Id = 4053;

    public override int Identifier => Id;

    public override string Manifest(object o) =>
        Wire(o) is var m && FormatFor(m) == WireFormat.Legacy && LegacyWire.Knows(m) ? LegacyWire.Manifest(m) : ProtobufWire.Manifest(m);

    // A message 0.1.0 never had goes in wire.proto whatever the cluster: its senders send it to nodes that read it only.
    public override byte[] ToBinary(object o) =>
        Wire(o) is var m && FormatFor(m) == WireFormat.Legacy && LegacyWire.Knows(m) ? LegacyWire.ToBinary(m) : ProtobufWire.ToBinary(m);

    public override object FromBinary(byte[] bytes, string manifest) =>
        (manifest.Contains(':') ? ProtobufWire.FromBinary(bytes, manifest) : LegacyWire.FromBinary(bytes, manifest))
        ?? throw new SerializationException($"unknown powa-cluster message manifest \"{manifest}\"");

    static IWireMessage Wire(object o) => o as IWireMessage ?? throw new ArgumentException($"{o.GetType().Name} has no wire format of powa-cluster's");

    // Akka asks for a message's manifest and its bytes in two calls, on one thread: the second gets the first's
    // format, so that a member joining between them cannot pair a manifest with bytes of the other format.
    [ThreadStatic] static object? _lastMessage;
    [ThreadStatic] static WireFormat _lastFormat;

    WireFormat FormatFor(IWireMessage o)
    {
        if (ReferenceEquals(_lastMessage, o))
        {
            _lastMessage = null;
            return _lastFormat;
        }
        _lastMessage = o;
        return _lastFormat = CurrentFormat();
    }

    Cluster? _cluster;
    Decision? _decision;

    sealed record Decision(ClusterEvent.CurrentClusterState On, WireFormat Format);

    /// <summary>The format every member of the cluster reads, decided again when the membership changes.</summary>
    WireFormat CurrentFormat()
    {
        if (system.Provider is not IClusterActorRefProvider) return WireFormat.Protobuf; // no cluster: no peer
        _cluster ??= Cluster.Get(system);
        var state = _cluster.State;
        if (Volatile.Read(ref _decision) is { } d && ReferenceEquals(d.On, state)) return d.Format;
        var format = WireFormats.For(state.Members.Select(m => m.AppVersion));
        Volatile.Write(ref _decision, new Decision(state, format));
        return format;
    }
}

/// <summary>A message that is not what its manifest says.</summary>
public sealed class SerializationException(string message) : Exception(message);
