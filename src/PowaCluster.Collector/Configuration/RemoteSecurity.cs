using Npgsql;

namespace PowaCluster.Collector.Configuration;

/// <summary>
/// How the collector's connections to the remote servers are protected: powa_servers has no column for it, so
/// it is a setting of the node (RemoteSslMode, RemoteSslRootCert, RemoteRequireAuth), in libpq's words. The
/// repository's come from its DSN's own parameters (sslmode, sslrootcert, require_auth).
/// </summary>
public sealed record RemoteSecurity(SslMode SslMode, string? RootCertificate, string? RequireAuth)
{
    public static readonly RemoteSecurity Default = new(SslMode.Prefer, null, null);

    /// <exception cref="ArgumentException">a value libpq would not take; the message names the setting</exception>
    public static RemoteSecurity Parse(string? sslMode, string? rootCert, string? requireAuth)
    {
        SslMode mode;
        try { mode = Dsn.ParseSslMode((sslMode ?? "prefer").Trim().ToLowerInvariant()); }
        catch (DsnException e) { throw new ArgumentException($"RemoteSslMode: {e.Message}"); }
        string? auth;
        try { auth = string.IsNullOrWhiteSpace(requireAuth) ? null : Dsn.ParseRequireAuth(requireAuth); }
        catch (DsnException e) { throw new ArgumentException($"RemoteRequireAuth: {e.Message}"); }
        if (!string.IsNullOrWhiteSpace(rootCert) && !File.Exists(rootCert))
            throw new ArgumentException($"RemoteSslRootCert: no file {rootCert}");
        if (mode is SslMode.VerifyCA or SslMode.VerifyFull && string.IsNullOrWhiteSpace(rootCert))
            throw new ArgumentException($"RemoteSslMode {sslMode} checks the remotes' certificates: set RemoteSslRootCert to the CA file that signed them");
        return new RemoteSecurity(mode, string.IsNullOrWhiteSpace(rootCert) ? null : rootCert, auth);
    }

    public void ApplyTo(NpgsqlConnectionStringBuilder b)
    {
        b.SslMode = SslMode;
        if (RootCertificate is not null) b.RootCertificate = RootCertificate;
        if (RequireAuth is not null) b.RequireAuth = RequireAuth;
    }
}
