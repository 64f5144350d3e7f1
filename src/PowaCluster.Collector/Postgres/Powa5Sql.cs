namespace PowaCluster.Collector.Postgres;

/// <summary>
/// PoWA 5 (archivist 5.x): datasources are named (extensions and core modules) in powa_functions, an
/// external one has its *_src function and *_src_tmp table in its own extension's schema, extension versions
/// are kept in powa_extension_config, and powa's own roles may drive the collector.
/// </summary>
public sealed class Powa5Sql(PowaVersion version, string schema) : PowaSql(version, schema)
{
    protected override string ExtensionVersionTable => "powa_extension_config";

    public override string RegisteredExtensions =>
        $"SELECT extname FROM {Q("powa_extension_config")} WHERE srvid = $1 AND enabled ORDER BY extname";

    public override string Datasources =>
        "SELECT f.name, f.external, f.query_source, f.query_cleanup, f.function_name, " +
        SchemaOf("CASE WHEN f.external THEN f.name ELSE 'powa' END") + " " +
        $"FROM {Q("powa_functions")} f WHERE f.operation = 'snapshot' AND f.enabled AND f.srvid = $1 ORDER BY f.priority";

    public override string PerDatabaseDatasources =>
        "SELECT x.catalog, x.name, x.query_source, x.dbnames, x.excluded, " +
        // the tmp table as the repository names it, and its column types (empty when it is missing)
        "(SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) FROM pg_catalog.pg_class c " +
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = pg_catalog.to_regclass(x.tmp_table)), " +
        "ARRAY(SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a " +
        " WHERE a.attrelid = pg_catalog.to_regclass(x.tmp_table) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum) " +
        "FROM (" +
        $"SELECT false AS catalog, 1 AS k, f.priority, f.db_module AS name, f.query_source, f.tmp_table, f.dbnames, NULL::text[] AS excluded FROM {Q("powa_db_functions")}($1, $2) f " +
        "WHERE f.operation = 'snapshot' AND f.enabled AND f.query_source IS NOT NULL " +
        "UNION ALL " +
        $"SELECT true, 2, 0, c.catname, c.query_source, c.tmp_table, NULL, c.excluded_dbnames FROM {Q("powa_catalog_functions")}($1, $2, '1 year') c " +
        "WHERE c.query_source IS NOT NULL" +
        ") x ORDER BY x.k, x.priority, x.name";

    /// <summary>
    /// As the reference for PoWA 5: members (with usage) of pg_signal_backend (PostgreSQL 14+) or of the roles
    /// powa_roles maps to powa_signal_backend, powa_write_all_data or powa_admin.
    /// </summary>
    protected override string NotifyAllowed =>
        "coalesce((SELECT bool_or(pg_catalog.pg_has_role(a.usesysid, r.oid, 'USAGE')) FROM pg_catalog.pg_roles r WHERE " +
        "(r.rolname = 'pg_signal_backend' AND current_setting('server_version_num')::int >= 140000) OR " +
        $"r.rolname IN (SELECT p.rolname FROM {Q("powa_roles")} p " +
        "WHERE p.powa_role IN ('powa_signal_backend', 'powa_write_all_data', 'powa_admin'))), false)";
}
