using System.Text;
using Npgsql;

namespace PowaCluster.Collector.Configuration;

/// <summary>A connection string that could not be understood. The message names the problem, never the password.</summary>
public sealed class DsnException(string message) : Exception(message);

/// <summary>
/// Turns the DSN forms a PostgreSQL DBA uses into an Npgsql connection string:
/// libpq URIs (<c>postgresql://user:pass@host:port/db?sslmode=require</c>), libpq key=value strings
/// (<c>host=h port=5432 dbname=powa</c>) and Npgsql connection strings (<c>Host=h;Port=5432;Database=powa</c>).
/// </summary>
public static class Dsn
{
    public static NpgsqlConnectionStringBuilder Parse(string dsn)
    {
        if (string.IsNullOrWhiteSpace(dsn))
            throw new DsnException("the DSN is empty");
        var text = dsn.Trim();
        if (text.StartsWith("postgresql://", StringComparison.OrdinalIgnoreCase) ||
            text.StartsWith("postgres://", StringComparison.OrdinalIgnoreCase))
            return ParseUri(text);
        // libpq keywords are lower case: "Host=h" or anything with ';' is an Npgsql connection string, unless
        // its first part has libpq's "key=value key=value" (a ';' in a value, a capitalised key): Npgsql would
        // read "h password=x" as the host, and every message naming the host would show the password.
        var firstKey = text.Split('=', 2)[0].Trim();
        var libpqPairs = System.Text.RegularExpressions.Regex.IsMatch(text.Split(';', 2)[0], @"=\S*\s+[A-Za-z_]+\s*=");
        if (!libpqPairs && (text.Contains(';') || firstKey.Any(char.IsUpper)))
            return ParseNpgsql(text);
        return FromLibpqPairs(ParseKeyValue(text));
    }

    /// <summary>host:port/dbname user=name, for logs and errors: never the password.</summary>
    public static string Describe(NpgsqlConnectionStringBuilder b) =>
        $"{b.Host}:{b.Port}/{b.Database} user={b.Username}";

    static NpgsqlConnectionStringBuilder ParseNpgsql(string text)
    {
        try
        {
            var b = new NpgsqlConnectionStringBuilder(text);
            if (string.IsNullOrEmpty(b.Host))
                throw new DsnException("the connection string names no host");
            return b;
        }
        catch (ArgumentException e)
        {
            throw new DsnException($"invalid Npgsql connection string: {StripValue(e.Message)}");
        }
    }

    // Npgsql's messages may quote the offending value; keep only the part before it.
    static string StripValue(string message)
    {
        var i = message.IndexOf('\'');
        return i > 0 ? message[..i].TrimEnd() : message;
    }

    static NpgsqlConnectionStringBuilder ParseUri(string text)
    {
        var rest = text[(text.IndexOf("://", StringComparison.Ordinal) + 3)..];
        var pairs = new List<KeyValuePair<string, string>>();
        string? query = null;
        var q = rest.IndexOf('?');
        if (q >= 0) { query = rest[(q + 1)..]; rest = rest[..q]; }
        string? path = null;
        var slash = rest.IndexOf('/');
        if (slash >= 0) { path = rest[(slash + 1)..]; rest = rest[..slash]; }
        var at = rest.LastIndexOf('@');
        if (at >= 0)
        {
            var userinfo = rest[..at];
            rest = rest[(at + 1)..];
            var colon = userinfo.IndexOf(':');
            var user = colon >= 0 ? userinfo[..colon] : userinfo;
            if (user.Length > 0) pairs.Add(new("user", Decode(user)));
            if (colon >= 0) pairs.Add(new("password", Decode(userinfo[(colon + 1)..])));
        }
        if (rest.Length > 0)
        {
            var hosts = new List<string>();
            var ports = new List<string>();
            foreach (var part in rest.Split(','))
            {
                string host = part, port = "";
                if (part.StartsWith('['))
                {
                    var close = part.IndexOf(']');
                    if (close < 0) throw new DsnException("unterminated [IPv6] host in the URI");
                    host = part[1..close];
                    if (close + 1 < part.Length && part[close + 1] == ':') port = part[(close + 2)..];
                }
                else
                {
                    var c = part.LastIndexOf(':');
                    if (c >= 0) { host = part[..c]; port = part[(c + 1)..]; }
                }
                hosts.Add(Decode(host));
                ports.Add(port);
            }
            if (hosts.Any(h => h.Length > 0)) pairs.Add(new("host", string.Join(",", hosts)));
            if (ports.Any(p => p.Length > 0)) pairs.Add(new("port", string.Join(",", ports.Select(p => p.Length == 0 ? "5432" : p))));
        }
        if (!string.IsNullOrEmpty(path)) pairs.Add(new("dbname", Decode(path)));
        if (!string.IsNullOrEmpty(query))
        {
            foreach (var kv in query.Split('&', StringSplitOptions.RemoveEmptyEntries))
            {
                var eq = kv.IndexOf('=');
                if (eq <= 0) throw new DsnException($"URI parameter \"{Decode(kv)}\" has no value");
                pairs.Add(new(Decode(kv[..eq]), Decode(kv[(eq + 1)..])));
            }
        }
        return FromLibpqPairs(pairs);
    }

    static string Decode(string s)
    {
        try { return Uri.UnescapeDataString(s); }
        catch (UriFormatException) { throw new DsnException("invalid percent-encoding in the URI"); }
    }

    /// <summary>libpq's key = value syntax: values may be single-quoted, with \' and \\ escapes.</summary>
    internal static List<KeyValuePair<string, string>> ParseKeyValue(string text)
    {
        var pairs = new List<KeyValuePair<string, string>>();
        var i = 0;
        while (true)
        {
            while (i < text.Length && char.IsWhiteSpace(text[i])) i++;
            if (i >= text.Length) break;
            var keyStart = i;
            while (i < text.Length && text[i] != '=' && !char.IsWhiteSpace(text[i])) i++;
            var key = text[keyStart..i];
            while (i < text.Length && char.IsWhiteSpace(text[i])) i++;
            if (i >= text.Length || text[i] != '=')
                throw new DsnException($"missing \"=\" after \"{key}\" in the connection string");
            i++;
            while (i < text.Length && char.IsWhiteSpace(text[i])) i++;
            var value = new StringBuilder();
            if (i < text.Length && text[i] == '\'')
            {
                i++;
                var closed = false;
                while (i < text.Length)
                {
                    if (text[i] == '\\' && i + 1 < text.Length) { value.Append(text[i + 1]); i += 2; continue; }
                    if (text[i] == '\'') { closed = true; i++; break; }
                    value.Append(text[i++]);
                }
                if (!closed) throw new DsnException($"unterminated quoted value for \"{key}\"");
            }
            else
            {
                while (i < text.Length && !char.IsWhiteSpace(text[i]))
                {
                    if (text[i] == '\\' && i + 1 < text.Length) { value.Append(text[i + 1]); i += 2; continue; }
                    value.Append(text[i++]);
                }
            }
            pairs.Add(new(key, value.ToString()));
        }
        if (pairs.Count == 0) throw new DsnException("the DSN is empty");
        return pairs;
    }

    static NpgsqlConnectionStringBuilder FromLibpqPairs(IEnumerable<KeyValuePair<string, string>> pairs)
    {
        var b = new NpgsqlConnectionStringBuilder();
        string? host = null, hostaddr = null, port = null;
        foreach (var (key, value) in pairs)
        {
            switch (key)
            {
                case "host": host = value; break;
                case "hostaddr": hostaddr = value; break;
                case "port": port = value; break;
                case "dbname": b.Database = value; break;
                case "user": b.Username = value; break;
                case "password": b.Password = value; break;
                case "passfile": b.Passfile = value; break;
                case "application_name": b.ApplicationName = value; break;
                case "fallback_application_name": b.ApplicationName ??= value; break;
                case "connect_timeout": b.Timeout = Math.Max(1, ParseInt(key, value)); break;
                case "options": b.Options = value; break;
                case "sslmode": b.SslMode = ParseSslMode(value); break;
                case "sslcert": b.SslCertificate = value; break;
                case "sslkey": b.SslKey = value; break;
                case "sslrootcert": b.RootCertificate = value; break;
                case "sslpassword": b.SslPassword = value; break;
                case "require_auth": b.RequireAuth = ParseRequireAuth(value); break;
                case "target_session_attrs": b.TargetSessionAttributes = value; break;
                case "keepalives": b.TcpKeepAlive = value != "0"; break;
                case "keepalives_idle": b.TcpKeepAliveTime = ParseInt(key, value); break;
                case "keepalives_interval": b.TcpKeepAliveInterval = ParseInt(key, value); break;
                case "client_encoding": b.ClientEncoding = value; break;
                case "krbsrvname": b.KerberosServiceName = value; break;
                case "gssencmode": break; // Npgsql negotiates GSS encryption itself
                default: throw new DsnException($"unknown connection parameter \"{key}\"");
            }
        }
        var hosts = (host is { Length: > 0 } ? host : hostaddr is { Length: > 0 } ? hostaddr : DefaultHost()).Split(',');
        if (port is null or "")
        {
            b.Host = string.Join(",", hosts);
        }
        else
        {
            var ports = port.Split(',');
            if (ports.Length == 1)
            {
                b.Host = string.Join(",", hosts);
                b.Port = ParseInt("port", ports[0]);
            }
            else if (ports.Length == hosts.Length)
            {
                // Npgsql takes one port per host inside Host.
                b.Host = string.Join(",", hosts.Zip(ports, (h, p) => $"{h}:{ParseInt("port", p)}"));
            }
            else throw new DsnException($"{hosts.Length} hosts but {ports.Length} ports in the connection string");
        }
        return b;
    }

    /// <summary>libpq's default: the PGHOST environment variable, else the local socket directory.</summary>
    static string DefaultHost() =>
        Environment.GetEnvironmentVariable("PGHOST") is { Length: > 0 } h ? h : "/var/run/postgresql";

    static int ParseInt(string key, string value) =>
        int.TryParse(value, out var n) ? n : throw new DsnException($"\"{key}\" must be a number");

    /// <summary>
    /// libpq's require_auth (PostgreSQL 16): the authentication methods the server may ask for, as Npgsql's
    /// RequireAuth. scram-sha-256 alone means a server (or a man in the middle) can never get a password in
    /// clear or an MD5 hash of it.
    /// </summary>
    public static string ParseRequireAuth(string value)
    {
        var methods = value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(m => m.ToLowerInvariant() switch
        {
            "password" => "Password",
            "md5" => "MD5",
            "gss" => "GSS",
            "sspi" => "SSPI",
            "scram-sha-256" => "ScramSHA256",
            "none" => "None",
            _ when m.StartsWith('!') => throw new DsnException($"require_auth \"{m}\": negated methods are not supported; list the allowed ones"),
            _ => throw new DsnException($"invalid require_auth method \"{m}\" (password, md5, gss, sspi, scram-sha-256 or none)"),
        }).ToList();
        if (methods.Count == 0) throw new DsnException("require_auth is empty");
        return string.Join(",", methods);
    }

    public static SslMode ParseSslMode(string value) => value switch
    {
        "disable" => SslMode.Disable,
        "allow" => SslMode.Allow,
        "prefer" => SslMode.Prefer,
        "require" => SslMode.Require,
        "verify-ca" => SslMode.VerifyCA,
        "verify-full" => SslMode.VerifyFull,
        _ => throw new DsnException($"invalid sslmode \"{value}\" (disable, allow, prefer, require, verify-ca or verify-full)"),
    };
}
