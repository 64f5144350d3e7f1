using Akka.Event;
using Akka.Hosting;
using Akka.Remote.Hosting;
using PowaCluster.Collector.Actors;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Serialization;

namespace PowaCluster.Collector.Hosting;

/// <summary>
/// The node's Akka.Remote endpoint, its TLS, and the serialization of the messages between nodes.
/// </summary>
public static class RemotingConfiguration
{
    /// <summary>
    /// Akka.Remote endpoint of the node (port 0 picks a free one). It binds ClusterHost and tells the other
    /// nodes ClusterPublicHost when set (behind NAT; in Kubernetes, the pod IP). With cluster TLS (the default
    /// of a multi-node cluster) every association is mutual TLS: both sides present a certificate, and each
    /// accepts the other's only when it chains to the cluster's CA (ClusterTls.Validator, which logs a refusal
    /// in one line); the addresses are akka.ssl.tcp://.
    /// </summary>
    public static AkkaConfigurationBuilder WithPowaRemoting(this AkkaConfigurationBuilder b, CollectorRuntime rt)
    {
        var options = new RemoteOptions
        {
            HostName = rt.Settings.ClusterHost,
            PublicHostName = string.IsNullOrWhiteSpace(rt.Settings.ClusterPublicHost) ? null : rt.Settings.ClusterPublicHost,
            Port = rt.Settings.ClusterPort,
        };
        if (rt.Tls is { } tls)
        {
            options.EnableSsl = true;
            options.Ssl = new SslOptions
            {
                X509Certificate = tls.Certificate,
                RequireMutualAuthentication = true,
                SuppressValidation = false,
                ValidateCertificateHostname = false,
                CustomValidator = tls.Validator,
            };
            // Its expiry: a metric, and a warning at start and every day from 14 days before.
            rt.Metrics.ObserveCertificate(() => (tls.NotAfterUtc - rt.Time.GetUtcNow().UtcDateTime).TotalSeconds);
            b.AddStartup((system, _) => system.Scheduler.Advanced.ScheduleRepeatedly(TimeSpan.Zero, TimeSpan.FromDays(1), () =>
            {
                if (tls.ExpiryProblem(rt.Time.GetUtcNow().UtcDateTime) is { } problem) system.Log.Warning(problem);
            }));
        }
        else if (!rt.Settings.IsOneNode || !rt.Settings.ClusterOnLoopback)
        {
            b.AddStartup((system, _) => system.Log.Warning(
                "Cluster TLS is off (Tls:Mode off): anyone who reaches {0}:{1} can join this cluster and read what its nodes send each other",
                rt.Settings.ClusterHost, rt.Settings.ClusterPort));
        }
        b.AddHocon(UntrustedModeHocon(rt.Settings), HoconAddMode.Prepend);
        return b.WithRemoting(options);
    }

    /// <summary>
    /// Untrusted mode: a peer cannot deploy actors here, send PoisonPill, Kill or another system command, or
    /// reach an actor by path except the ones the cluster itself talks to that way (membership, heartbeats,
    /// the singletons and their proxies, the shard regions and coordinator, the replicator of the coordinator's
    /// state, named after the node's shard role) and the coordinator's reload (RequestReload). Mutual TLS decides
    /// who is a peer.
    /// </summary>
    public static string UntrustedModeHocon(CollectorSettings s) => $$"""
        akka.remote.untrusted-mode = on
        akka.remote.trusted-selection-paths = [
          "/system/cluster/core/daemon", "/system/cluster/heartbeatReceiver", "/system/remote-watcher",
          "/system/sharding/server-collectorCoordinator", "/system/sharding/server-collectorCoordinator/singleton",
          "/system/sharding/server-collectorCoordinator/singleton/coordinator", "/system/sharding/server-collector",
          "/system/sharding/{{Uri.EscapeDataString(ClusterConfiguration.ShardRole(s))}}Replicator", "/system/ddataReplicator",
          "/user/fleet-coordinator", "{{ShardingConfiguration.CoordinatorPath}}", "/user/{{StateKeeper.Name}}"
        ]
        """;

    /// <summary>
    /// What crosses the network: the collector's messages (IWireMessage) through ClusterMessageSerializer,
    /// field by field; Akka's own through Akka's protobuf serializers; and nothing through Akka's JSON fallback,
    /// whose payloads name the .NET type to build (RefusingSerializer takes its place and its identifier).
    /// </summary>
    public static AkkaConfigurationBuilder WithPowaSerialization(this AkkaConfigurationBuilder b) =>
        b.AddHocon(SerializationHocon, HoconAddMode.Prepend);

    public static readonly string SerializationHocon = $$"""
        akka.actor {
          serializers {
            json = "{{ShortName(typeof(RefusingSerializer))}}"
            powa = "{{ShortName(typeof(ClusterMessageSerializer))}}"
          }
          serialization-bindings {
            "{{ShortName(typeof(IWireMessage))}}" = powa
          }
          serialization-identifiers {
            "{{ShortName(typeof(RefusingSerializer))}}" = 1
            "{{ShortName(typeof(ClusterMessageSerializer))}}" = {{ClusterMessageSerializer.Id}}
          }
        }
        """;

    static string ShortName(Type t) => $"{t.FullName}, {t.Assembly.GetName().Name}";

    /// <summary>The protocol of the node addresses: akka.ssl.tcp with cluster TLS, akka.tcp without.</summary>
    public static string Protocol(CollectorRuntime rt) => rt.Tls is null ? "akka.tcp" : "akka.ssl.tcp";
}
