using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Postgres;

namespace PowaCluster.Collector.Spooling;

/// <summary>What a node knows of one server for collecting it without the repository: its row (the password only
/// when the row has one), the plan of its snapshots and when its last one was taken, as far as this node knows.</summary>
/// <remarks>Row is null for a server whose plan came before this node read its row (it is not saved so).</remarks>
public sealed record CachedServer(ServerRow? Row, SnapshotPlan? Plan, DateTime? LastTakenUtc);

/// <summary>
/// What a node keeps beside its spool to start and collect while the repository is down: what the repository is
/// (its powa, the identity that names the spool) and every active server (CachedServer). Kept up to date by the
/// node's StateKeeper; read at start when the repository cannot be reached. One file per repository DSN in the
/// spool's root, written as a new file then renamed, for its owner only (0600), and read only when it is this
/// user's own and nobody else may write it: it holds the servers' passwords.
/// </summary>
public sealed record NodeState(string Repository, string? Identity, string PowaVersion, string PowaSchema, DateTime SavedUtc,
    IReadOnlyDictionary<int, CachedServer> Servers)
{
    /// <summary>An empty state for a repository, before anything was read from it.</summary>
    public static NodeState Empty(string repository, string? identity, PowaVersion powa, string schema) =>
        new(repository, identity, powa.Text, schema, DateTime.MinValue, new Dictionary<int, CachedServer>());

    /// <summary>The active servers as the repository gives them now: the others go; what was seen of each stays.</summary>
    public NodeState WithRows(IReadOnlyList<ServerRow> rows, DateTime nowUtc, out bool changed)
    {
        var servers = new Dictionary<int, CachedServer>();
        changed = rows.Count != Servers.Values.Count(s => s.Row is not null);
        foreach (var row in rows)
        {
            var old = Servers.GetValueOrDefault(row.Config.SrvId);
            changed |= old?.Row != row;
            servers[row.Config.SrvId] = new CachedServer(row, old?.Plan, old?.LastTakenUtc);
        }
        return this with { Servers = servers, SavedUtc = nowUtc };
    }

    /// <summary>
    /// What was seen of a server's collection (here or on another node): a plan replaces the one known, a time
    /// taken later than the one known replaces it. Changed: whether this differs from what was known.
    /// </summary>
    public NodeState WithSeen(int srvid, SnapshotPlan? plan, DateTime? lastTakenUtc, out bool changed)
    {
        var old = Servers.GetValueOrDefault(srvid) ?? new CachedServer(null, null, null);
        var now = old with
        {
            Plan = plan ?? old.Plan,
            LastTakenUtc = lastTakenUtc is { } t && (old.LastTakenUtc is not { } known || t > known) ? t : old.LastTakenUtc,
        };
        changed = now.LastTakenUtc != old.LastTakenUtc || (plan is not null && (old.Plan is null || !plan.SameAs(old.Plan)));
        if (!changed) return this;
        return this with { Servers = new Dictionary<int, CachedServer>(Servers) { [srvid] = now } };
    }

    const UnixFileMode OwnerOnlyFile = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    const int FormatVersion = 1;

    /// <summary>The file for the repository <paramref name="repository"/> (host:port/dbname, no password) under the spool's root.</summary>
    public static string PathFor(string root, string repository) =>
        Path.Combine(root, "node-" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(repository)))[..16] + ".state");

    /// <summary>The state saved for this repository, or null when there is none; why it cannot be used in Problem.</summary>
    public static NodeState? Load(string root, string repository, out string? problem)
    {
        problem = null;
        var path = PathFor(root, repository);
        if (!File.Exists(path)) return null;
        try
        {
            if (!OperatingSystem.IsWindows())
            {
                // Owner only, as the spool's files: what another user could write is not trusted with connections.
                if (new FileInfo(path).LinkTarget is not null) throw new InvalidDataException("it is a symbolic link");
                if ((File.GetUnixFileMode(path) & (UnixFileMode.GroupWrite | UnixFileMode.OtherWrite)) != 0)
                    throw new InvalidDataException("others may write it (this node writes it 0600): remove it, or make it this user's own, 0600");
                OwnedPath.Claim(path, OwnerOnlyFile);
            }
            var dto = JsonSerializer.Deserialize(File.ReadAllBytes(path), NodeStateJson.Default.Saved)
                      ?? throw new InvalidDataException("it is empty");
            if (dto.Format != FormatVersion) throw new InvalidDataException($"format {dto.Format}, this build reads {FormatVersion}");
            if (dto.Repository != repository) throw new InvalidDataException($"it is for {dto.Repository}");
            if (Postgres.PowaVersion.Parse(dto.Powa) is null || string.IsNullOrEmpty(dto.Schema)) throw new InvalidDataException("no powa version");
            var servers = new Dictionary<int, CachedServer>();
            foreach (var s in dto.Servers ?? [])
            {
                var cfg = s.Row ?? throw new InvalidDataException("a server without its row");
                if (cfg.SrvId <= 0 || cfg.Frequency <= 0) throw new InvalidDataException($"server {cfg.SrvId} with frequency {cfg.Frequency}");
                servers[cfg.SrvId] = new CachedServer(new ServerRow(cfg, s.RowVersion ?? ""), s.Plan?.ToPlan(), s.LastTakenUtc);
            }
            return new NodeState(dto.Repository, dto.Identity, dto.Powa!, dto.Schema!, dto.SavedUtc, servers);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException or InvalidDataException or NotSupportedException)
        {
            problem = $"the node's saved state {path} cannot be used: {e.Message}";
            return null;
        }
    }

    /// <summary>Writes the state (a new file, fsynced, renamed over the old one); throws IOException or UnauthorizedAccessException.</summary>
    public void Save(string root)
    {
        Directory.CreateDirectory(root);
        var path = PathFor(root, Repository);
        var part = path + ".part";
        var dto = new SavedState
        {
            Format = FormatVersion,
            Repository = Repository,
            Identity = Identity,
            Powa = PowaVersion,
            Schema = PowaSchema,
            SavedUtc = SavedUtc,
            Servers = Servers.Values.Where(s => s.Row is not null).OrderBy(s => s.Row!.Config.SrvId).Select(s => new SavedServer
            {
                Row = s.Row!.Config,
                RowVersion = s.Row!.RowVersion,
                Plan = s.Plan is null ? null : SavedPlan.Of(s.Plan),
                LastTakenUtc = s.LastTakenUtc,
            }).ToList(),
        };
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write, Share = FileShare.None };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = OwnerOnlyFile;
        File.Delete(part);
        using (var f = new FileStream(part, options))
        {
            JsonSerializer.Serialize(f, dto, NodeStateJson.Default.Saved);
            f.Flush(flushToDisk: true);
        }
        File.Move(part, path, overwrite: true);
    }

    // The file's shape: fields only ever added (readers ignore what they do not know).
    internal sealed class SavedState
    {
        public int Format { get; set; }
        public string Repository { get; set; } = "";
        public string? Identity { get; set; }
        public string? Powa { get; set; }
        public string? Schema { get; set; }
        public DateTime SavedUtc { get; set; }
        public List<SavedServer>? Servers { get; set; }
    }

    internal sealed class SavedServer
    {
        public ServerConfig? Row { get; set; }
        public string? RowVersion { get; set; }
        public SavedPlan? Plan { get; set; }
        public DateTime? LastTakenUtc { get; set; }
    }

    internal sealed class SavedPlan
    {
        public List<Datasource> Global { get; set; } = [];
        public List<SavedDbDatasource> PerDatabase { get; set; } = [];

        public static SavedPlan Of(SnapshotPlan p) => new()
        {
            Global = p.Global.ToList(),
            PerDatabase = p.PerDatabase.Select(d => new SavedDbDatasource
            {
                Name = d.Name,
                Catalog = d.Catalog,
                QuerySource = d.QuerySource,
                Target = d.Target,
                Columns = d.Columns.ToList(),
                DbNames = d.DbNames?.ToList(),
                ExcludedDbNames = d.ExcludedDbNames.ToList(),
            }).ToList(),
        };

        public SnapshotPlan ToPlan() => new(Global,
            PerDatabase.Select(d => new DbDatasource(d.Name, d.Catalog, d.QuerySource, d.Target, d.Columns, d.DbNames, d.ExcludedDbNames)).ToList());
    }

    internal sealed class SavedDbDatasource
    {
        public string Name { get; set; } = "";
        public bool Catalog { get; set; }
        public string QuerySource { get; set; } = "";
        public string? Target { get; set; }
        public List<string> Columns { get; set; } = [];
        public List<string>? DbNames { get; set; }
        public List<string> ExcludedDbNames { get; set; } = [];
    }
}

[JsonSourceGenerationOptions(WriteIndented = false)]
[JsonSerializable(typeof(NodeState.SavedState), TypeInfoPropertyName = "Saved")]
internal sealed partial class NodeStateJson : JsonSerializerContext;
