using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Akka.Event;
using Akka.Remote.Transport.DotNetty;
using PowaCluster.Collector.Configuration;

namespace PowaCluster.Collector.Security;

/// <summary>
/// The node's TLS material for Akka.Remote, read when its actor system starts from <see cref="TlsSettings"/> (a
/// renewal on disk restarts it: CertificateRenewal in the host): its certificate
/// with the private key, and the cluster's CA. A peer, inbound or outbound, is accepted only when it presents a
/// certificate that chains to that CA (the system's trust store is not used: a certificate from a public CA
/// does not make a process a member). Host names are not checked: nodes are reached by IP, and any holder of
/// a certificate of the cluster's CA is a node.
/// </summary>
public sealed class ClusterTls
{
    public X509Certificate2 Certificate { get; }
    public X509Certificate2Collection Authorities { get; }

    /// <summary>What was said of refused peers (one line per host and reason a minute), shared with the log filter.</summary>
    public TlsRefusals Refusals { get; } = new();

    /// <summary>The three files as they were read (FingerprintOf): a change on disk is a renewal to pick up.</summary>
    public string? Fingerprint { get; private init; }

    readonly IReadOnlyList<string> _allowedNames;

    ClusterTls(X509Certificate2 certificate, X509Certificate2Collection authorities, IReadOnlyList<string> allowedNames)
    {
        Certificate = certificate;
        Authorities = authorities;
        _allowedNames = allowedNames;
    }

    /// <summary>A hash of the certificate, key and CA files' bytes; null when one cannot be read now.</summary>
    public static string? FingerprintOf(TlsSettings t)
    {
        try
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            foreach (var path in new[] { t.CertificatePath, t.KeyPath, t.CaPath })
            {
                hash.AppendData(File.ReadAllBytes(path!));
                hash.AppendData([0]);
            }
            return Convert.ToHexString(hash.GetHashAndReset());
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException) { return null; }
    }

    /// <summary>The material the settings name, or null when the node's remoting runs without TLS.</summary>
    /// <exception cref="ArgumentException">a file missing, unreadable or not what it should be; the message names it</exception>
    public static ClusterTls? Load(CollectorSettings s)
    {
        var t = s.Tls;
        if (!t.EnabledFor(s)) return null;
        var fingerprint = FingerprintOf(t); // before reading: a change after it is seen as one
        X509Certificate2 cert;
        try
        {
            cert = X509Certificate2.CreateFromPemFile(t.CertificatePath!, t.KeyPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException)
        {
            throw new ArgumentException($"cluster TLS: cannot read the node's certificate {t.CertificatePath} with its key {t.KeyPath}: {e.Message}");
        }
        if (!cert.HasPrivateKey)
            throw new ArgumentException($"cluster TLS: {t.KeyPath} holds no private key for {t.CertificatePath}");
        var cas = new X509Certificate2Collection();
        try
        {
            cas.ImportFromPemFile(t.CaPath!);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException)
        {
            throw new ArgumentException($"cluster TLS: cannot read the CA certificate {t.CaPath}: {e.Message}");
        }
        if (cas.Count == 0) throw new ArgumentException($"cluster TLS: {t.CaPath} holds no PEM certificate");
        var tls = new ClusterTls(cert, cas, t.AllowedNames.ToList()) { Fingerprint = fingerprint };
        if (tls.Check(cert) is { } problem)
            throw new ArgumentException($"cluster TLS: the node's own certificate {t.CertificatePath} ({cert.Subject}) is not accepted by {t.CaPath}: {problem}");
        return tls;
    }

    /// <summary>Why a peer's certificate is refused, or null when it chains to the cluster's CA.</summary>
    public string? Check(X509Certificate2? peer, X509Chain? presented = null)
    {
        if (peer is null) return "it presented no certificate";
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(Authorities);
        // A private CA publishes no revocation list that a node could reach; rotate by replacing the CA.
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        if (presented is not null)
            foreach (var e in presented.ChainElements)
                if (!e.Certificate.RawDataMemory.Span.SequenceEqual(peer.RawDataMemory.Span))
                    chain.ChainPolicy.ExtraStore.Add(e.Certificate);
        if (chain.Build(peer)) return NodeCertificateProblem(peer) ?? NameProblem(peer);
        var status = chain.ChainStatus.Select(x => x.Status).Distinct().ToList();
        return status.Contains(X509ChainStatusFlags.UntrustedRoot) || status.Contains(X509ChainStatusFlags.PartialChain)
            ? $"its certificate ({peer.Subject}, issued by {peer.Issuer}) is not signed by the cluster's CA"
            : $"its certificate ({peer.Subject}) is not valid: {string.Join(", ", chain.ChainStatus.Select(x => x.StatusInformation.Trim()).Distinct())}";
    }

    public const string ServerAuth = "1.3.6.1.5.5.7.3.1", ClientAuth = "1.3.6.1.5.5.7.3.2";

    /// <summary>
    /// Why a certificate of the CA is not a node's, or null: a node both accepts and opens connections, so it
    /// needs both TLS usages; a CA certificate (or one without a usage list) is not a node's.
    /// </summary>
    static string? NodeCertificateProblem(X509Certificate2 c)
    {
        if (c.Extensions.OfType<X509BasicConstraintsExtension>().FirstOrDefault() is { CertificateAuthority: true })
            return $"its certificate ({c.Subject}) is a CA certificate, not a node's (basicConstraints CA:TRUE)";
        var usages = c.Extensions.OfType<X509EnhancedKeyUsageExtension>().FirstOrDefault()?.EnhancedKeyUsages
            .Cast<System.Security.Cryptography.Oid>().Select(o => o.Value).ToHashSet() ?? [];
        return usages.Contains(ServerAuth) && usages.Contains(ClientAuth) ? null
            : $"its certificate ({c.Subject}) is not for both TLS server and client authentication (extendedKeyUsage serverAuth, clientAuth)";
    }

    /// <summary>Why a node certificate of the CA is not allowed by Tls:AllowedNames, or null (any, without a list).</summary>
    string? NameProblem(X509Certificate2 c)
    {
        if (_allowedNames.Count == 0) return null;
        var names = new List<string> { c.GetNameInfo(X509NameType.SimpleName, false) };
        if (c.Extensions.OfType<X509SubjectAlternativeNameExtension>().FirstOrDefault() is { } san) names.AddRange(san.EnumerateDnsNames());
        return names.Any(n => _allowedNames.Any(a => Allows(a, n))) ? null
            : $"its certificate ({c.Subject}; names {string.Join(", ", names.Distinct())}) has no name in Tls:AllowedNames";
    }

    static bool Allows(string allowed, string name) => allowed.StartsWith("*.")
        ? name.Length > allowed.Length - 1 && name.EndsWith(allowed[1..], StringComparison.OrdinalIgnoreCase)
        : name.Equals(allowed, StringComparison.OrdinalIgnoreCase);

    /// <summary>When the node's certificate expires (UTC): the metric powa_tls_certificate_validity_seconds counts down to it.</summary>
    public DateTime NotAfterUtc => Certificate.NotAfter.ToUniversalTime();

    /// <summary>Warned from this long before the node's certificate expires.</summary>
    public static readonly TimeSpan ExpiryWarning = TimeSpan.FromDays(14);

    /// <summary>
    /// What to warn about the node's certificate at <paramref name="nowUtc"/>, or null: from 14 days before it
    /// expires (once expired, every new connection to or from this node is refused, and the cluster loses it).
    /// </summary>
    public string? ExpiryProblem(DateTime nowUtc)
    {
        var left = NotAfterUtc - nowUtc;
        if (left > ExpiryWarning) return null;
        return left <= TimeSpan.Zero
            ? $"Cluster TLS: this node's certificate ({Certificate.Subject}) expired at {NotAfterUtc:yyyy-MM-dd HH:mm} UTC: other nodes refuse its connections; renew it (the node picks up the renewed files by itself)"
            : $"Cluster TLS: this node's certificate ({Certificate.Subject}) expires at {NotAfterUtc:yyyy-MM-dd HH:mm} UTC, in {left.TotalDays:F0} days: renew it before then (the node picks up the renewed files by itself)";
    }

    /// <summary>Akka.Remote's callback, on both sides of every handshake: one line per refused peer and minute.</summary>
    public CertificateValidationCallback Validator => (certificate, chain, remotePeer, _, log) =>
    {
        var problem = Check(certificate, chain);
        if (problem is null) return true;
        if (Refusals.ShouldLog(TlsRefusals.Host(remotePeer), problem))
            log.Warning("Cluster TLS: refused {0}: {1} (not logged again for this host and reason for a minute)", remotePeer, problem);
        return false;
    };
}
