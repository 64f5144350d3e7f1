namespace PowaCluster.Collector.Postgres;

/// <summary>
/// PoWA 4 (archivist 4.x): datasources are the modules of powa_functions, every *_src function and
/// *_src_tmp table lives in powa's schema, extension versions are kept in powa_extensions.
/// </summary>
public sealed class Powa4Sql(PowaVersion version, string schema) : PowaSql(version, schema)
{
    protected override string ExtensionVersionTable => "powa_extensions";

    public override string Datasources =>
        $"SELECT module, false, query_source, query_cleanup, function_name, {SchemaOf("'powa'")} " +
        $"FROM {Q("powa_functions")} WHERE operation = 'snapshot' AND enabled AND srvid = $1 ORDER BY priority";

    /// <summary>PostgreSQL 14+: members of pg_signal_backend; before 14: roles that may write powa's data.</summary>
    protected override string NotifyAllowed =>
        "CASE WHEN current_setting('server_version_num')::int >= 140000 " +
        "THEN pg_catalog.pg_has_role(a.usesysid, 'pg_signal_backend', 'MEMBER') " +
        $"ELSE pg_catalog.has_table_privilege(a.usesysid, '{Schema.Replace("'", "''")}.powa_statements', 'INSERT') END";
}
