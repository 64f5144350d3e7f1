using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Npgsql;
using PowaCluster.Lab.Demo;
using PowaCluster.Lab.Embedded;
using Xunit;

namespace PowaCluster.Tests.Support;

/// <summary>
/// A real powa-web (a release tarball of ../shared/vendor, run with Debian's python3) on a free loopback port,
/// reading one repository database, with a logged-in session: what a DBA's browser asks, the tests ask.
/// </summary>
public sealed class PowaWeb : IAsyncDisposable
{
    readonly Process _process;
    readonly string _dir;
    readonly HttpClient _http;

    public string Version { get; }
    public int Port { get; }

    PowaWeb(Process process, string dir, int port, string version)
    {
        (_process, _dir, Port, Version) = (process, dir, port, version);
        _http = new HttpClient(new HttpClientHandler { CookieContainer = new CookieContainer(), AllowAutoRedirect = false })
        {
            BaseAddress = new Uri($"http://127.0.0.1:{port}/"),
            Timeout = TimeSpan.FromSeconds(30),
        };
    }

    /// <summary>The powa-web releases of ../shared/vendor, oldest first (none without it).</summary>
    public static IReadOnlyList<string> Releases =>
        SharedVendor.Directory is not { } vendor ? [] :
        Directory.EnumerateFiles(vendor, "powa-web-*.tar.gz")
            .Select(f => System.IO.Path.GetFileName(f)["powa-web-".Length..^".tar.gz".Length])
            .Where(v => System.Version.TryParse(v, out _)).OrderBy(System.Version.Parse).ToList();

    /// <summary>
    /// The archivist a powa-web release reads (powa-web refuses another major.minor): null for 4.x (Debian's
    /// 4.1.4, the suite's PoWA 4 set-up), else the archivist release of the same major.minor built here, or "".
    /// </summary>
    public static string? ArchivistFor(string webRelease)
    {
        var v = System.Version.Parse(webRelease);
        return v.Major == 4 ? null : LocalPostgres.PowaRelease($"{v.Major}.{v.Minor}") ?? "";
    }

    public static async Task<PowaWeb> StartAsync(string release, IPostgresInstance repository, string database)
    {
        var tarball = SharedVendor.File($"powa-web-{release}.tar.gz") ?? throw new InvalidOperationException($"no powa-web-{release}.tar.gz in ../shared/vendor");
        var dir = Directory.CreateTempSubdirectory("powa-cluster-test-web-").FullName;
        try
        {
            await RunAsync("tar", $"-xzf {tarball} -C {dir}");
            var root = System.IO.Path.Combine(dir, $"powa-web-{release}");
            var port = ClusterNodes.FreePorts(1)[0];
            // The file powa-web reads beside itself (./powa-web.conf); --config names it as well, in case.
            var conf = System.IO.Path.Combine(root, "powa-web.conf");
            await File.WriteAllTextAsync(conf,
                $"servers={{'main': {{'host': '127.0.0.1', 'port': '{repository.Port}', 'database': '{database}', " +
                "'query': {'client_encoding': 'utf8'}}}\n" +
                $"cookie_secret='{Guid.NewGuid():N}'\nport={port}\naddress='127.0.0.1'\n");
            var psi = new ProcessStartInfo("/usr/bin/python3", ["./powa-web", $"--config={conf}"])
            {
                WorkingDirectory = root,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            var process = Process.Start(psi) ?? throw new InvalidOperationException("cannot start powa-web");
            var log = new System.Text.StringBuilder();
            process.OutputDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
            process.ErrorDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            var web = new PowaWeb(process, dir, port, release);
            await Eventually.HoldsAsync(async () =>
            {
                if (process.HasExited)
                    lock (log) throw new Xunit.Sdk.XunitException($"powa-web {release} exited with {process.ExitCode}: {log}");
                try { using var r = await web._http.GetAsync("login/"); return true; }
                catch (HttpRequestException) { return false; }
            }, TimeSpan.FromSeconds(30), $"powa-web {release} listening on 127.0.0.1:{port}");
            return web;
        }
        catch
        {
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
            throw;
        }
    }

    /// <summary>POST /login/ as the browser's form does; fails unless powa-web accepted it (its session cookies set).</summary>
    public async Task LoginAsync(NpgsqlConnectionStringBuilder repository)
    {
        using var r = await _http.PostAsync("login/", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            // powa-web 5 names the field "user", 4 "username".
            ["user"] = repository.Username!,
            ["username"] = repository.Username!,
            ["password"] = repository.Password!,
            ["server"] = "main",
        }));
        // Accepted: a redirect to the index; refused: the login page again (403), with powa-web's reason in it.
        Assert.True(r.StatusCode == HttpStatusCode.Found, $"powa-web {Version} refused the login: {(int)r.StatusCode} {await r.Content.ReadAsStringAsync()}");
        // A version mismatch also redirects, with a flash message: the servers page tells it apart.
        using var page = await _http.GetAsync("server/");
        var html = await page.Content.ReadAsStringAsync();
        Assert.True(page.StatusCode == HttpStatusCode.OK, $"powa-web {Version}: /server/ answered {(int)page.StatusCode}");
        Assert.DoesNotContain("does not match powa-web version", html);
    }

    /// <summary>A JSON endpoint, with from/to where it is a metric (a range of the repository's time).</summary>
    public async Task<JsonElement> GetAsync(string path, (DateTime From, DateTime To)? range = null)
    {
        var (url, body) = await GetTextAsync(path, range);
        try { return JsonDocument.Parse(body).RootElement.Clone(); }
        catch (JsonException) { throw new Xunit.Sdk.XunitException($"powa-web {Version} GET /{url}: not JSON: {body[..Math.Min(body.Length, 2000)]}"); }
    }

    /// <summary>A page as powa-web renders it (JSON, or HTML for powa-web 4's content widgets), and its URL.</summary>
    public async Task<(string Url, string Body)> GetTextAsync(string path, (DateTime From, DateTime To)? range = null)
    {
        var url = range is { } t
            ? $"{path}?from={Uri.EscapeDataString(t.From.ToString("yyyy-MM-dd HH:mm:ss'+00'"))}&to={Uri.EscapeDataString(t.To.ToString("yyyy-MM-dd HH:mm:ss'+00'"))}"
            : path;
        using var r = await _http.GetAsync(url);
        var body = await r.Content.ReadAsStringAsync();
        Assert.True(r.StatusCode == HttpStatusCode.OK, $"powa-web {Version} GET /{url}: {(int)r.StatusCode} {body[..Math.Min(body.Length, 2000)]}");
        return (url, body);
    }

    /// <summary>The rows ("data") of a JSON endpoint.</summary>
    public async Task<List<JsonElement>> RowsAsync(string path, (DateTime From, DateTime To)? range = null)
    {
        var json = await GetAsync(path, range);
        return json.ValueKind == JsonValueKind.Object && json.TryGetProperty("data", out var data) && data.ValueKind == JsonValueKind.Array
            ? [.. data.EnumerateArray()]
            : throw new Xunit.Sdk.XunitException($"powa-web {Version} /{path}: no data array in {json}");
    }

    static async Task RunAsync(string file, string args)
    {
        using var p = Process.Start(new ProcessStartInfo(file, args) { RedirectStandardError = true, UseShellExecute = false })!;
        var err = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{file} {args}: {err}");
    }

    public async ValueTask DisposeAsync()
    {
        _http.Dispose();
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }
        }
        catch (InvalidOperationException) { /* exited meanwhile */ }
        _process.Dispose();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}

/// <summary>A test run once per powa-web release of ../shared/vendor; skipped, and counted so, where there is none.</summary>
public sealed class PowaWebTheoryAttribute : TheoryAttribute
{
    public PowaWebTheoryAttribute()
    {
        if (PowaWeb.Releases.Count == 0)
            Skip = "no powa-web here (../shared/vendor/powa-web-*.tar.gz)";
        else if (!File.Exists("/usr/bin/python3"))
            Skip = "powa-web needs /usr/bin/python3 (scripts/install-deps.sh installs it with tornado and psycopg2)";
    }
}

/// <summary>The powa-web releases of ../shared/vendor, one test case each (with PowaWebTheory).</summary>
public sealed class PowaWebReleasesAttribute : ReleasesDataAttribute
{
    protected override IReadOnlyList<string> Releases => PowaWeb.Releases;
}
