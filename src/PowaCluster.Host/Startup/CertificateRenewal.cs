using Akka.Actor;
using Akka.Cluster;
using Akka.Event;
using PowaCluster.Collector.Hosting;
using PowaCluster.Collector.Security;

namespace PowaCluster.Host.Startup;

/// <summary>
/// A renewed cluster certificate, used without restarting the process. Akka.Remote takes its certificate once,
/// when the actor system starts; so when the files change (cert-manager renewing a Secret, an operator) into a
/// node certificate of the cluster's CA, the node stops its actor system gracefully (its servers are handed
/// off, as for any leave) and starts a new one with the new files (Program). Nodes take turns: each waits its
/// rank among the cluster's members (by address) times Tls:RenewalRestartSpacing, so a certificate renewed on
/// every node at once does not take the whole cluster down together. Files that change into something the node
/// cannot use are warned about once, and the node keeps the certificate it has.
/// </summary>
public static class CertificateRenewal
{
    /// <summary>Returns true once the node is due to restart for a renewed certificate; false when cancelled.</summary>
    public static async Task<bool> WatchAsync(CollectorRuntime rt, ActorSystem system, CancellationToken ct)
    {
        if (rt.Tls is not { } loaded) return false;
        var t = rt.Settings.Tls;
        string? unusable = null;
        try
        {
            while (true)
            {
                await Task.Delay(t.RenewalCheckInterval, rt.Time, ct);
                var now = ClusterTls.FingerprintOf(t);
                if (now is null || now == loaded.Fingerprint || now == unusable) continue; // mid-write, unchanged, or said
                ClusterTls renewed;
                try { renewed = ClusterTls.Load(rt.Settings)!; }
                catch (ArgumentException e)
                {
                    unusable = now;
                    system.Log.Warning("{0}; the files changed, and this node keeps the certificate it has ({1}, valid until {2:yyyy-MM-dd HH:mm} UTC)",
                        e.Message, loaded.Certificate.Subject, loaded.NotAfterUtc);
                    continue;
                }
                var cluster = Cluster.Get(system);
                var wait = TurnOf(cluster.State.Members.Where(m => m.Status is MemberStatus.Up or MemberStatus.WeaklyUp).Select(m => m.Address),
                    cluster.SelfAddress, t.RenewalRestartSpacing);
                system.Log.Info("Cluster TLS: a renewed certificate is on disk ({0}, valid until {1:yyyy-MM-dd HH:mm} UTC): this node restarts " +
                                "its actor system {2} to use it (its servers are collected by the other nodes meanwhile)",
                    renewed.Certificate.Subject, renewed.NotAfterUtc, wait == TimeSpan.Zero ? "now" : $"in {wait.TotalSeconds:F0} s, after the nodes before it");
                if (wait > TimeSpan.Zero) await Task.Delay(wait, rt.Time, ct);
                return true;
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested) { return false; }
    }

    /// <summary>
    /// How long this node waits before its restart: its place among the members that are up, by address (every
    /// node sees the same order), times the spacing. Not a member (yet): no wait.
    /// </summary>
    public static TimeSpan TurnOf(IEnumerable<Address> up, Address self, TimeSpan spacing) =>
        Math.Max(0, up.OrderBy(a => a, Member.AddressOrdering).ToList().IndexOf(self)) * spacing;
}
