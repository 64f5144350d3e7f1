using Akka.Actor;
using Akka.Serialization;

namespace PowaCluster.Collector.Serialization;

/// <summary>
/// Takes the place of Akka's default JSON serializer (identifier 1, the fallback for every type without a
/// binding of its own): a JSON payload names its .NET type and Newtonsoft.Json instantiates it, which a peer
/// could use to make a node build objects of its choosing. Nothing of ours needs it (the collector's
/// messages have ClusterMessageSerializer, Akka's own have theirs), so a message that would fall back to it is
/// refused on both sides, with its type named in the error.
/// </summary>
public sealed class RefusingSerializer : Serializer
{
    public RefusingSerializer(ExtendedActorSystem system) : base(system) { }

    /// <summary>Akka passes the JSON serializer's settings section to whatever takes its place.</summary>
    public RefusingSerializer(ExtendedActorSystem system, Akka.Configuration.Config _) : base(system) { }

    public override int Identifier => 1;
    public override bool IncludeManifest => false;

    public override byte[] ToBinary(object obj) => throw new SerializationException(
        $"{obj.GetType().FullName} has no serializer bound to it (powa-cluster refuses Akka's JSON fallback): it cannot be sent to another node");

    public override object FromBinary(byte[] bytes, Type type) => throw new SerializationException(
        $"refused a message in Akka's JSON format ({type?.FullName ?? "no type"}, {bytes.Length} bytes) from another node: powa-cluster does not deserialize it");
}
