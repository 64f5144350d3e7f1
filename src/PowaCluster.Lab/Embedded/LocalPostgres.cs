using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using Npgsql;

namespace PowaCluster.Lab.Embedded;

/// <summary>
/// A throwaway PostgreSQL 15 instance: initdb into a temporary directory, a free loopback port, the PoWA
/// stats extensions preloaded. It listens on 127.0.0.1 and on further loopback addresses (127.0.0.2, ...),
/// so that one instance gives several distinct (hostname, port) pairs. initdb refuses root: as root it runs
/// as the postgres OS user through runuser.
/// </summary>
public sealed partial class LocalPostgres : IPostgresInstance
{
    public const string SuperUser = "postgres";
    static readonly List<LocalPostgres> Running = [];

    public string Name { get; }
    public int Port { get; }
    public string Password { get; }
    public string Directory { get; }
    public int LoopbackAddresses { get; }
    string DataPath => Path.Combine(Directory, "data");
    public string LogFile => Path.Combine(Directory, "postgresql.log");
    bool _stopped;

    /// <summary>The binaries it was started with: a restart runs the same tree (its archivist, its libraries).</summary>
    readonly string _binDir;

    LocalPostgres(string name, int port, string password, string dir, int loopbackAddresses, string binDir)
    {
        Name = name; Port = port; Password = password; Directory = dir; LoopbackAddresses = loopbackAddresses; _binDir = binDir;
    }

    /// <summary>PostgreSQL binds 64 sockets at most (MAXLISTEN), its Unix socket included.</summary>
    public const int MaxLoopbackAddresses = 60;

    public static string BinDir =>
        Environment.GetEnvironmentVariable("POWACLUSTER_PG_BIN") is { Length: > 0 } b ? b : "/usr/lib/postgresql/15/bin";

    /// <summary>Where scripts/install-deps.sh builds each archivist release: POWA_TREES/pg15-powa-X.Y.Z.</summary>
    public static string PowaTrees =>
        Environment.GetEnvironmentVariable("POWA_TREES") is { Length: > 0 } t ? t : "/opt/powa-cluster";

    /// <summary>
    /// The archivist releases built into a tree of their own (from ../shared/vendor), oldest first; none
    /// without ../shared/vendor (then the PoWA 5 tests are skipped). A tree without its stamp is a failed build.
    /// </summary>
    public static IReadOnlyList<string> PowaReleases =>
        !System.IO.Directory.Exists(PowaTrees) ? [] :
        System.IO.Directory.EnumerateDirectories(PowaTrees, "pg15-powa-*")
            .Select(d => Path.GetFileName(d)["pg15-powa-".Length..])
            .Where(v => Version.TryParse(v, out _) && PowaBinDir(v) is not null)
            .OrderBy(Version.Parse).ToList();

    /// <summary>The newest release built that is <paramref name="wanted"/> or starts with it ("5" or "5.1"); null: none.</summary>
    public static string? PowaRelease(string wanted) =>
        PowaReleases.LastOrDefault(v => v == wanted || v.StartsWith(wanted + ".", StringComparison.Ordinal));

    /// <summary>PostgreSQL 15's binaries in the tree of one archivist release; null when it is not built.</summary>
    public static string? PowaBinDir(string release)
    {
        var root = Path.Combine(PowaTrees, "pg15-powa-" + release);
        var bin = Path.Combine(root, "usr/lib/postgresql/15/bin");
        return File.Exists(Path.Combine(bin, "postgres")) && File.Exists(Path.Combine(root, ".stamp")) ? bin : null;
    }

    /// <summary>The i-th loopback address this instance listens on (1-based): 127.0.0.i.</summary>
    public string Host(int i = 1)
    {
        if (i < 1 || i > LoopbackAddresses) throw new ArgumentOutOfRangeException(nameof(i));
        return $"127.0.0.{i}";
    }

    public NpgsqlConnectionStringBuilder ConnectionString(string database = "postgres", int hostIndex = 1) => new()
    {
        Host = Host(hostIndex),
        Port = Port,
        Username = SuperUser,
        Password = Password,
        Database = database,
        Pooling = false,
        Timeout = 10,
        CommandTimeout = 60,
    };

    /// <summary>A factory for PowaLab.</summary>
    public static readonly PostgresFactory Factory = async (name, n) => await StartAsync(name, n);

    /// <summary>A factory for a PowaLab on one archivist release (PowaBinDir); null when it is not built.</summary>
    public static PostgresFactory? PowaFactory(string release) =>
        PowaBinDir(release) is { } bin ? async (name, n) => await StartAsync($"powa{release}-{name}", n, binDir: bin) : null;

    /// <param name="binDir">the PostgreSQL binaries to run (BinDir by default; PowaBinDir for an archivist release)</param>
    /// <param name="settings">more lines for postgresql.auto.conf</param>
    public static async Task<LocalPostgres> StartAsync(string name, int loopbackAddresses = 8,
        string? preload = "pg_stat_statements,pg_stat_kcache,pg_qualstats,pg_wait_sampling", string? binDir = null,
        IReadOnlyList<string>? settings = null)
    {
        binDir ??= BinDir;
        if (loopbackAddresses is < 1 or > MaxLoopbackAddresses) throw new ArgumentOutOfRangeException(nameof(loopbackAddresses));
        if (!File.Exists(Path.Combine(binDir, "initdb")))
            throw new InvalidOperationException($"PostgreSQL 15 is not installed ({binDir}/initdb not found): install postgresql-15");
        InstallExitHook();
        SweepOrphans();
        var dir = System.IO.Directory.CreateTempSubdirectory($"{DirPrefix}{name}-").FullName;
        var password = Convert.ToHexString(Guid.NewGuid().ToByteArray()).ToLowerInvariant();
        try
        {
            await File.WriteAllTextAsync(Path.Combine(dir, OwnerFile), Environment.ProcessId.ToString());
            var pwfile = Path.Combine(dir, "pwfile");
            await File.WriteAllTextAsync(pwfile, password + "\n");
            if (IsRoot) await Run("chown", $"-R postgres:postgres {dir}");
            await RunPg(binDir, "initdb", $"-D {DataDir(dir)} -U {SuperUser} --pwfile={pwfile} --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-sync --no-instructions");
            File.Delete(pwfile);
            var hba = Path.Combine(DataDir(dir), "pg_hba.conf");
            await File.AppendAllTextAsync(hba, "host all all 127.0.0.0/8 scram-sha-256\n");
            for (var attempt = 1; ; attempt++)
            {
                var port = FreePort();
                var conf = new StringBuilder();
                conf.AppendLine($"port = {port}");
                conf.AppendLine($"listen_addresses = '{string.Join(",", Enumerable.Range(1, loopbackAddresses).Select(i => $"127.0.0.{i}"))}'");
                conf.AppendLine($"unix_socket_directories = '{dir}'");
                if (preload is not null) conf.AppendLine($"shared_preload_libraries = '{preload}'");
                conf.AppendLine("max_connections = 300");
                conf.AppendLine("fsync = off");
                conf.AppendLine("synchronous_commit = off");
                conf.AppendLine("full_page_writes = off");
                conf.AppendLine("pg_stat_statements.track = all");
                conf.AppendLine("pg_qualstats.sample_rate = 1");
                conf.AppendLine("track_functions = 'all'");
                conf.AppendLine("log_min_messages = warning");
                foreach (var line in settings ?? []) conf.AppendLine(line);
                await File.WriteAllTextAsync(Path.Combine(DataDir(dir), "postgresql.auto.conf"), conf.ToString());
                if (IsRoot) await Run("chown", $"postgres:postgres {Path.Combine(DataDir(dir), "postgresql.auto.conf")}");
                try
                {
                    await RunPg(binDir, "pg_ctl", $"-D {DataDir(dir)} -l {Path.Combine(dir, "postgresql.log")} -w -t 60 start");
                    var pg = new LocalPostgres(name, port, password, dir, loopbackAddresses, binDir);
                    lock (Running) Running.Add(pg);
                    return pg;
                }
                catch (InvalidOperationException) when (attempt < 3)
                {
                    // Another process took the port between our probe and the start: try another one.
                }
            }
        }
        catch
        {
            TryDelete(dir);
            throw;
        }
    }

    static string DataDir(string dir) => Path.Combine(dir, "data");

    /// <summary>This instance's processes: its postmaster (from postmaster.pid) and the postmaster's children.</summary>
    public IReadOnlyList<int> ProcessIds()
    {
        var pidFile = Path.Combine(DataPath, "postmaster.pid");
        if (!File.Exists(pidFile) || !int.TryParse(File.ReadLines(pidFile).First().Trim(), out var postmaster)) return [];
        var pids = new List<int> { postmaster };
        foreach (var dir in System.IO.Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
            try
            {
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                if (int.TryParse(fields[1], out var ppid) && ppid == postmaster) pids.Add(pid);
            }
            catch (IOException) { /* gone meanwhile */ }
        }
        return pids;
    }

    /// <summary>
    /// SIGSTOP to the postmaster, then its children: the kernel still accepts TCP connections and nothing
    /// answers, as with a hung host or a blackholed network.
    /// </summary>
    public void Freeze() => SignalAll(SigStop);

    /// <summary>SIGCONT: the instance goes on where it stopped.</summary>
    public void Thaw() => SignalAll(SigCont);

    /// <summary>Stops the server (fast mode: sessions are ended, as a restart for a minor upgrade does), keeping its data.</summary>
    public Task StopAsync() => RunPg(_binDir, "pg_ctl", $"-D {DataPath} -m fast -w -t 60 stop");

    /// <summary>Its postmaster runs (pg_ctl's own test: the data directory has a postmaster.pid).</summary>
    public bool IsRunning => File.Exists(Path.Combine(DataPath, "postmaster.pid"));

    /// <summary>Starts it again after StopAsync, on the same port.</summary>
    public Task StartAgainAsync() =>
        RunPg(_binDir, "pg_ctl", $"-D {DataPath} -l {Path.Combine(Directory, "postgresql.log")} -w -t 60 start");

    /// <summary>SIGKILL to the postmaster and its children, as a host that loses power.</summary>
    public void Kill() => SignalAll(SigKill);

    const int SigKill = 9, SigCont = 18, SigStop = 19;

    void SignalAll(int signal)
    {
        foreach (var pid in ProcessIds())
            if (SysKill(pid, signal) != 0 && IsAlive(pid))
                throw new InvalidOperationException($"kill({pid}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    static extern int SysKill(int pid, int sig);

    /// <summary>Stops the server (immediate mode) and deletes its directory.</summary>
    public async ValueTask DisposeAsync()
    {
        lock (Running) Running.Remove(this);
        if (_stopped) return;
        _stopped = true;
        try { await RunPg(_binDir, "pg_ctl", $"-D {DataPath} -m immediate -w -t 30 stop"); }
        catch (Exception) { /* already stopped */ }
        TryDelete(Directory);
    }

    void StopNow()
    {
        if (_stopped) return;
        _stopped = true;
        try
        {
            using var p = Process.Start(StartInfo(Path.Combine(_binDir, "pg_ctl"), $"-D {DataPath} -m immediate -w -t 30 stop"));
            p?.WaitForExit(30_000);
        }
        catch (Exception) { }
        TryDelete(Directory);
    }

    static void TryDelete(string dir)
    {
        try { System.IO.Directory.Delete(dir, recursive: true); } catch (Exception) { }
    }

    /// <summary>A loopback port free now (the lab's instances and its stack node take theirs this way).</summary>
    internal static int FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        var port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }

    [DllImport("libc", EntryPoint = "geteuid")]
    static extern uint GetEuid();

    public static bool IsRoot => OperatingSystem.IsLinux() && GetEuid() == 0;

    static Task RunPg(string binDir, string tool, string args) =>
        IsRoot ? Run("runuser", $"-u postgres -- {Path.Combine(binDir, tool)} {args}") : Run(Path.Combine(binDir, tool), args);

    static ProcessStartInfo StartInfo(string file, string args)
    {
        var psi = IsRoot && !file.EndsWith("runuser") && !file.EndsWith("chown")
            ? new ProcessStartInfo("runuser", $"-u postgres -- {file} {args}")
            : new ProcessStartInfo(file, args);
        psi.RedirectStandardOutput = true;
        psi.RedirectStandardError = true;
        psi.UseShellExecute = false;
        psi.WorkingDirectory = "/tmp";
        return psi;
    }

    static async Task Run(string file, string args)
    {
        var psi = new ProcessStartInfo(file, args)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = "/tmp",
        };
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {file}");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"{Path.GetFileName(file)} {args.Split(' ')[0]} failed (exit {p.ExitCode}): {(await stderr).Trim()} {(await stdout).Trim()}".Trim());
    }
}
