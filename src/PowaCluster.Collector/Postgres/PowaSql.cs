namespace PowaCluster.Collector.Postgres;

/// <summary>A repository whose powa this collector cannot serve (too old, or a major it does not know yet).</summary>
public sealed class UnsupportedPowaException(string message) : Exception(message);

/// <summary>
/// The SQL a collector runs on a repository, for the powa major found there at start, every name qualified
/// with the schema powa lives in (quoted as an identifier). One subclass per major (Powa4Sql, Powa5Sql),
/// picked once per repository by <see cref="For"/>; what does not differ between majors is here.
/// Every value goes in as a parameter ($1 is the srvid where there is one).
/// </summary>
public abstract class PowaSql
{
    protected PowaSql(PowaVersion version, string schema)
    {
        Version = version;
        Schema = schema;
    }

    /// <summary>The powa extension's version on the repository.</summary>
    public PowaVersion Version { get; }

    /// <summary>The schema powa lives in on the repository, quoted (quote_ident).</summary>
    public string Schema { get; }

    /// <summary>The newest powa major this collector knows.</summary>
    public const int NewestMajor = 5;

    /// <param name="schema">the quoted schema of powa on the repository (quote_ident of pg_extension's namespace)</param>
    /// <exception cref="UnsupportedPowaException">powa older than 4 or newer than <see cref="NewestMajor"/></exception>
    public static PowaSql For(PowaVersion version, string schema) => version.Major switch
    {
        4 => new Powa4Sql(version, schema),
        5 => new Powa5Sql(version, schema),
        < 4 => throw new UnsupportedPowaException($"powa {version}; powa-cluster needs powa 4.0 or later"),
        _ => throw new UnsupportedPowaException(
            $"powa {version}, newer than powa-cluster supports (powa 4 and {NewestMajor}): upgrade powa-cluster"),
    };

    /// <summary>The version and quoted schema of powa in the connected database; no row without powa.</summary>
    public const string FindPowa =
        "SELECT e.extversion, pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_extension e " +
        "JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'powa'";

    /// <summary>A name qualified with powa's schema.</summary>
    public string Q(string name) => $"{Schema}.{name}";

    /// <summary>The active servers' rows; <paramref name="passwords"/> false: NULL for every password (the coordinator needs none).</summary>
    public string ActiveServers(bool passwords = true) =>
        $"SELECT id, hostname, port, username, {(passwords ? "password" : "NULL::text")}, dbname, frequency, alias, xmin::text " +
        $"FROM {Q("powa_servers")} WHERE id > 0 AND frequency > 0 ORDER BY id";

    /// <summary>$1 srvid: the server's row if it is active, as ActiveServers gives it, then the repository's powa now.</summary>
    public string ActiveServer =>
        $"SELECT id, hostname, port, username, password, dbname, frequency, alias, xmin::text, {PowaVersionNow} " +
        $"FROM {Q("powa_servers")} WHERE id = $1 AND id > 0 AND frequency > 0";

    /// <summary>
    /// $1 srvid, $2 text[], $3 the coalesce_seq the reporter last saw (NULL: any). Not while a snapshot's
    /// transaction holds the row (SKIP LOCKED): that store sets the errors itself, and a report waiting for its
    /// lock would hold a writer (and, taken first, make the store's NOWAIT lock skip it as "another
    /// collector"). Nor over a snapshot stored since the reporter's last look (coalesce_seq, which
    /// powa_take_snapshot increments, is past $3): a report that waited out a hung repository, or that an old
    /// owner of the server sends after the new one stored, is older than the errors there. Returns the row's
    /// coalesce_seq and whether it was written; no row when locked.
    /// </summary>
    public string ReplaceErrors =>
        $"WITH r AS (SELECT srvid, coalesce_seq FROM {Q("powa_snapshot_metas")} WHERE srvid = $1 FOR UPDATE SKIP LOCKED), " +
        $"w AS (UPDATE {Q("powa_snapshot_metas")} m SET errors = $2 FROM r WHERE m.srvid = r.srvid " +
        "AND ($3::bigint IS NULL OR r.coalesce_seq <= $3) RETURNING m.srvid) " +
        "SELECT r.coalesce_seq, EXISTS (SELECT FROM w) FROM r";

    /// <summary>$1 srvid, $2 text[].</summary>
    public string AppendErrors => $"UPDATE {Q("powa_snapshot_metas")} SET errors = pg_catalog.array_cat(errors, $2) WHERE srvid = $1";

    public string LastSnapshot =>
        "SELECT CASE WHEN snapts = '-infinity' THEN NULL ELSE extract(epoch FROM snapts)::float8 END, coalesce_seq " +
        $"FROM {Q("powa_snapshot_metas")} WHERE srvid = $1";

    /// <summary>
    /// The lock powa_take_snapshot takes to refuse concurrent snapshots of a server, taken first, NOWAIT; with
    /// the time of the server's last stored snapshot and its frequency, for the once-per-interval fence, and
    /// which server the row names now (hostname:port, as ServerConfig.Name), and its coalesce_seq (one more
    /// once this transaction's powa_take_snapshot is done). The powa_servers row is key-share locked in the same
    /// statement, NOWAIT too: the store's inserts reference it, and powa_delete_and_purge_server deletes it, then
    /// the metas row by cascade; taken later, that order deadlocked a purge against a store in progress.
    /// </summary>
    public string LockServer =>
        $"SELECT m.snapts, s.frequency, {PowaVersionNow}, s.hostname || ':' || s.port, m.coalesce_seq FROM {Q("powa_snapshot_metas")} m JOIN {Q("powa_servers")} s ON s.id = m.srvid " +
        "WHERE m.srvid = $1 FOR UPDATE OF m NOWAIT FOR KEY SHARE OF s NOWAIT";

    /// <summary>
    /// The powa extension's version in this database now: read at each store (the repository) and each read (a
    /// remote), so that an ALTER EXTENSION powa UPDATE on either side is seen at the next snapshot.
    /// </summary>
    public const string PowaVersionNow = "(SELECT e.extversion FROM pg_catalog.pg_extension e WHERE e.extname = 'powa')";

    /// <summary>
    /// $1 srvid, $2 when the snapshot was taken: powa_take_snapshot sets snapts to the repository's now(), the
    /// time it was stored; the collector sets it to the time it was taken, which the fence compares with.
    /// </summary>
    public string SetSnapshotTime => $"UPDATE {Q("powa_snapshot_metas")} SET snapts = $2 WHERE srvid = $1";

    /// <summary>$1 a srvid or NULL for all: each server's alias, address, last snapshot, last error and frequency (powa-cluster status).</summary>
    public string ServerStatuses =>
        "SELECT s.id, coalesce(s.alias, ''), s.hostname || ':' || s.port, " +
        "CASE WHEN m.snapts = '-infinity' THEN NULL ELSE m.snapts END, m.errors[array_upper(m.errors, 1)], s.frequency " +
        $"FROM {Q("powa_servers")} s LEFT JOIN {Q("powa_snapshot_metas")} m ON m.srvid = s.id " +
        "WHERE s.id > 0 AND ($1::int IS NULL OR s.id = $1) ORDER BY s.id";

    /// <summary>
    /// powa_take_snapshot($1), its number of errors also kept for the transaction in a setting, which
    /// LeftoverCleanup reads: the leftovers of a failed snapshot function are looked for only when one failed.
    /// </summary>
    public string TakeSnapshot =>
        $"SELECT pg_catalog.set_config('{TakeSnapshotErrorsSetting}', coalesce({Q("powa_take_snapshot")}($1), 0)::text, true)::int";

    public const string TakeSnapshotErrorsSetting = "powa_cluster.take_snapshot_errors";

    /// <summary>
    /// $1 srvid: deletes what a snapshot function that failed inside powa_take_snapshot left in a *_src_tmp
    /// table, only when powa_take_snapshot reported an error. The condition has no column: PostgreSQL tests it
    /// once, before the scan (a one-time filter), so a snapshot that went well does not scan the table. These
    /// tables are written and emptied by every snapshot and hold many dead rows between two vacuums (321,000,
    /// 156 MB for powa_statements_src_tmp with 1,000 servers): a scan each snapshot doubled powa_take_snapshot's cost.
    /// </summary>
    public static string LeftoverCleanup(string target) =>
        $"DELETE FROM {target} WHERE pg_catalog.current_setting('{TakeSnapshotErrorsSetting}')::int > 0 AND srvid = $1";

    /// <summary>$1 srvid, $2 the remote's server_version.</summary>
    public string SaveServerVersion => $"UPDATE {Q("powa_servers")} SET version = $2 WHERE id = $1 AND version IS DISTINCT FROM $2";

    /// <summary>The table that keeps, per server, the version of each extension (srvid, extname, version).</summary>
    protected abstract string ExtensionVersionTable { get; }

    /// <summary>$1 srvid, $2 extnames, $3 versions: the versions of the extensions the repository tracks for the server.</summary>
    public string SaveExtensionVersions =>
        $"UPDATE {Q(ExtensionVersionTable)} e SET version = r.version " +
        "FROM unnest($2::text[], $3::text[]) AS r(extname, version) " +
        "WHERE e.srvid = $1 AND e.extname = r.extname AND e.version IS DISTINCT FROM r.version";

    /// <summary>$1 srvid: the extensions the repository has registered (and enabled) for the server, by name.</summary>
    public virtual string RegisteredExtensions =>
        $"SELECT extname FROM {Q(ExtensionVersionTable)} WHERE srvid = $1 ORDER BY extname";

    /// <summary>
    /// What the collector's repository role may not do, one (privilege, object) row per missing privilege (none:
    /// all there): read powa_servers, read and update powa_snapshot_metas, write the *_src_tmp tables, run
    /// powa_take_snapshot.
    /// </summary>
    public string MissingRepositoryPrivileges =>
        // has_*_privilege with a list is true when any one is held: one privilege per test.
        "SELECT p, o FROM (" +
        $"SELECT {L(Q("powa_servers"))} AS o, 'SELECT' AS p, pg_catalog.has_table_privilege({L(Q("powa_servers"))}, 'SELECT') AS ok UNION ALL " +
        $"SELECT {L(Q("powa_snapshot_metas"))}, p, pg_catalog.has_table_privilege({L(Q("powa_snapshot_metas"))}, p) FROM unnest(ARRAY['SELECT', 'UPDATE']) p UNION ALL " +
        $"SELECT {L(Q("powa_take_snapshot") + "(integer)")}, 'EXECUTE', pg_catalog.has_function_privilege({L(Q("powa_take_snapshot") + "(integer)")}, 'EXECUTE') UNION ALL " +
        "SELECT c.oid::regclass::text, p, pg_catalog.has_table_privilege(c.oid, p) FROM pg_catalog.pg_class c " +
        $"CROSS JOIN unnest(ARRAY['INSERT', 'DELETE']) p WHERE {IsStagingTable}) x WHERE NOT ok ORDER BY o, p";

    /// <summary>
    /// Whether the pg_class row c is a staging table: a *_src_tmp table of an installed extension, where the
    /// collector copies snapshots (the stores' targets, the privileges check looks at, the vacuum's tables).
    /// </summary>
    public const string IsStagingTable =
        "c.relkind IN ('r', 'p') AND c.relname LIKE '%\\_src\\_tmp' AND EXISTS (SELECT FROM pg_catalog.pg_depend d " +
        "WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid AND d.deptype = 'e')";

    static string L(string text) => "'" + text.Replace("'", "''") + "'";

    public string ForgetHypopg => $"DELETE FROM {Q(ExtensionVersionTable)} WHERE srvid = $1 AND extname = 'hypopg'";

    /// <summary>$1 srvid, $2 hypopg's version on the remote.</summary>
    public string SaveHypopg =>
        $"INSERT INTO {Q(ExtensionVersionTable)} AS x (srvid, extname, version) VALUES ($1, 'hypopg', $2) " +
        "ON CONFLICT (srvid, extname) DO UPDATE SET version = EXCLUDED.version WHERE x.version IS DISTINCT FROM EXCLUDED.version";

    /// <summary>The quoted schema of an extension on the repository, for the datasources query (NULL when it is not installed).</summary>
    protected static string SchemaOf(string extnameExpression) =>
        "(SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_extension x " +
        $"JOIN pg_catalog.pg_namespace n ON n.oid = x.extnamespace WHERE x.extname = {extnameExpression})";

    /// <summary>
    /// $1 srvid: the server's enabled snapshot datasources in priority order, as (name, external, query_source,
    /// query_cleanup, function_name, tmp_schema): tmp_schema is the quoted schema of the datasource's
    /// *_src_tmp table on the repository (powa's, or its extension's when external), NULL when that
    /// extension is not installed there.
    /// </summary>
    public abstract string Datasources { get; }

    /// <summary>
    /// $1 srvid, $2 the remote's server_version_num: the per-database datasources (PoWA 5's db modules, then
    /// its catalogs), as (catalog, name, query_source, dbnames, excluded_dbnames, target, columns); null when
    /// this powa has none (PoWA 4).
    /// </summary>
    public virtual string? PerDatabaseDatasources => null;

    /// <summary>
    /// $1 the senders' backend pids: (pid, role oid, role name, may drive the collector over NOTIFY) for each
    /// one still connected, in one query however many wait; a pid not returned has gone.
    /// </summary>
    public string NotifySenders =>
        $"SELECT a.pid, a.usesysid, a.usename::text, {NotifyAllowed} " +
        "FROM pg_catalog.pg_stat_activity a WHERE a.pid = ANY($1) AND a.usesysid IS NOT NULL";

    /// <summary>Of <c>a.usesysid</c>: true when that role may drive the collector, as the reference decides for this powa major.</summary>
    protected abstract string NotifyAllowed { get; }

    public override string ToString() => $"powa {Version} in schema {Schema}";
}
