namespace PowaCluster.Collector.Configuration;

/// <summary>
/// Mutual TLS between the nodes of a cluster (Akka.Remote over TLS). Every node presents its certificate and
/// accepts a peer only when the peer's certificate chains to <see cref="CaPath"/>: a process that reaches
/// ClusterPort without such a certificate cannot join, read a message, or send one. PEM files, so that a
/// Kubernetes Secret of type kubernetes.io/tls (cert-manager's: tls.crt, tls.key, ca.crt) mounts as it is;
/// they are read at start (rotation: restart the node). The node's certificate must be for both TLS server and
/// client authentication and not a CA's (ClusterTls.Check).
/// </summary>
public sealed class TlsSettings
{
    /// <summary>
    /// "auto" (default): on for a cluster of several nodes (seeds or Kubernetes discovery) and for any node
    /// whose ClusterHost is not a loopback address; off only for a node alone on loopback (the default);
    /// "on"; "off" (no TLS off loopback: anyone who reaches ClusterPort can join the cluster; logged as a
    /// warning at start).
    /// </summary>
    public string Mode { get; set; } = TlsModes.Auto;

    /// <summary>This node's certificate (PEM), with the intermediates after it if any.</summary>
    public string? CertificatePath { get; set; }

    /// <summary>Its private key (PEM, unencrypted: PKCS#8 or PKCS#1/SEC1).</summary>
    public string? KeyPath { get; set; }

    /// <summary>The certificate authority (PEM, one or more certificates) that every node's certificate chains to.</summary>
    public string? CaPath { get; set; }

    /// <summary>
    /// The names a peer's certificate may carry (its CN or a DNS name of its subjectAltName): exact, or *.suffix
    /// for any name under it. Empty (default): any node certificate of the CA is a node.
    /// </summary>
    public List<string> AllowedNames { get; set; } = [];

    /// <summary>How often the files are compared with what the node loaded: a renewal is picked up within this (README, "Cluster TLS").</summary>
    public TimeSpan RenewalCheckInterval { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Between two nodes' restarts for a renewed certificate: each waits its rank in the cluster times this.</summary>
    public TimeSpan RenewalRestartSpacing { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>Whether the remoting of a node with these cluster settings runs over TLS.</summary>
    public bool EnabledFor(CollectorSettings s) => Mode switch
    {
        TlsModes.On => true,
        TlsModes.Off => false,
        _ => !s.IsOneNode || !s.ClusterOnLoopback,
    };

    public void Validate(CollectorSettings s)
    {
        Mode = (Mode ?? "").Trim().ToLowerInvariant();
        if (Mode is not (TlsModes.Auto or TlsModes.On or TlsModes.Off))
            throw new ArgumentException($"Tls:Mode must be \"{TlsModes.Auto}\", \"{TlsModes.On}\" or \"{TlsModes.Off}\", not \"{Mode}\"");
        foreach (var n in AllowedNames)
            if (string.IsNullOrWhiteSpace(n) || n.IndexOf('*', 1) >= 0 || (n.StartsWith('*') && !n.StartsWith("*.")))
                throw new ArgumentException($"Tls:AllowedNames: \"{LogText.OneLine(n ?? "", 100)}\" is not a name, nor *.suffix");
        if (RenewalCheckInterval <= TimeSpan.Zero) throw new ArgumentException($"Tls:RenewalCheckInterval must be positive, not {RenewalCheckInterval}");
        if (RenewalRestartSpacing < TimeSpan.Zero) throw new ArgumentException($"Tls:RenewalRestartSpacing must not be negative, not {RenewalRestartSpacing}");
        if (!EnabledFor(s)) return;
        var missing = new[] { (nameof(CertificatePath), CertificatePath), (nameof(KeyPath), KeyPath), (nameof(CaPath), CaPath) }
            .Where(x => string.IsNullOrWhiteSpace(x.Item2)).Select(x => $"Tls:{x.Item1}").ToList();
        if (missing.Count > 0)
            throw new ArgumentException(
                (Mode == TlsModes.On ? "Tls:Mode is on"
                    : s.IsOneNode ? $"ClusterHost {s.ClusterHost} is not a loopback address, where the cluster port authenticates nodes with mutual TLS"
                    : "a cluster of several nodes authenticates its nodes with mutual TLS") +
                $": set {string.Join(", ", missing)} (PEM files; README, \"Cluster TLS\"), or Tls:Mode off to let anyone who " +
                "reaches ClusterPort join the cluster");
    }
}

public static class TlsModes
{
    public const string Auto = "auto";
    public const string On = "on";
    public const string Off = "off";
}
