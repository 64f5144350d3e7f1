using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace PowaCluster.Lab.Embedded;

/// <summary>
/// Throwaway TLS material for clusters on loopback (the demo's nodes, the tests): a CA and certificates for
/// nodes, as PEM files in a private directory deleted on dispose. ECDSA P-256, valid for a day. In production
/// the certificates come from the operator's CA or cert-manager (README, "Cluster TLS").
/// </summary>
public sealed class LabCertificates : IDisposable
{
    readonly X509Certificate2 _ca;
    readonly ECDsa _caKey;
    public string Directory { get; }
    public string CaPath => Path.Combine(Directory, "ca.crt");

    LabCertificates(string directory, X509Certificate2 ca, ECDsa caKey)
    {
        Directory = directory;
        _ca = ca;
        _caKey = caKey;
    }

    /// <summary>A new CA, its certificate written to ca.crt.</summary>
    public static LabCertificates Create(string name = "powa-cluster lab CA")
    {
        var dir = System.IO.Directory.CreateTempSubdirectory("powa-cluster-tls-").FullName;
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        var ca = req.CreateSelfSigned(LabClock.Offset.AddMinutes(-5), LabClock.Offset.AddDays(365));
        var lab = new LabCertificates(dir, ca, key);
        File.WriteAllText(lab.CaPath, ca.ExportCertificatePem());
        return lab;
    }

    /// <summary>
    /// A node certificate signed by this CA (server and client use, for 127.0.0.1, 90 days): (certificate, key)
    /// paths. <paramref name="notAfter"/> and <paramref name="usages"/> (extended key usage OIDs) make others.
    /// </summary>
    public (string Certificate, string Key) Issue(string name, DateTimeOffset? notAfter = null, string[]? usages = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = NodeRequest(name, key, usages);
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7f;
        using var cert = req.Create(_ca, LabClock.Offset.AddMinutes(-5), notAfter ?? LabClock.Offset.AddDays(90), serial);
        return Write(name, cert, key);
    }

    /// <summary>A self-signed certificate of the same shape, signed by no CA of the cluster (a stranger's).</summary>
    public (string Certificate, string Key) SelfSigned(string name)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var cert = NodeRequest(name, key).CreateSelfSigned(LabClock.Offset.AddMinutes(-5), LabClock.Offset.AddHours(23));
        return Write(name, cert, key);
    }

    /// <summary>The settings of a node that uses the certificate issued for name (PowaCluster__Tls__... keys).</summary>
    public IReadOnlyDictionary<string, string> Settings(string name)
    {
        var (cert, key) = File.Exists(Path.Combine(Directory, $"{name}.crt"))
            ? (Path.Combine(Directory, $"{name}.crt"), Path.Combine(Directory, $"{name}.key"))
            : Issue(name);
        return new Dictionary<string, string>
        {
            ["Tls__CertificatePath"] = cert,
            ["Tls__KeyPath"] = key,
            ["Tls__CaPath"] = CaPath,
        };
    }

    /// <summary>The same as the environment of a powa-cluster process (PowaCluster__Tls__...).</summary>
    public Dictionary<string, string> Environment(string name) =>
        Settings(name).ToDictionary(kv => $"PowaCluster__{kv.Key}", kv => kv.Value);

    static CertificateRequest NodeRequest(string name, ECDsa key, string[]? usages = null)
    {
        var req = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        var oids = new OidCollection();
        foreach (var u in usages ?? ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]) oids.Add(new Oid(u)); // server and client authentication
        req.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(oids, false));
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(System.Net.IPAddress.Loopback);
        san.AddDnsName("localhost");
        req.CertificateExtensions.Add(san.Build());
        return req;
    }

    (string, string) Write(string name, X509Certificate2 cert, ECDsa key)
    {
        var certPath = Path.Combine(Directory, $"{name}.crt");
        var keyPath = Path.Combine(Directory, $"{name}.key");
        File.WriteAllText(certPath, cert.ExportCertificatePem());
        File.WriteAllText(keyPath, key.ExportPkcs8PrivateKeyPem());
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(keyPath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        return (certPath, keyPath);
    }

    public void Dispose()
    {
        _ca.Dispose();
        _caKey.Dispose();
        try { System.IO.Directory.Delete(Directory, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
