using PowaCluster.Collector.Control;
using PowaCluster.Collector.Postgres;
using Xunit;

namespace PowaCluster.Tests.Unit;

/// <summary>The per-major SQL and the PoWA 5 pieces that need no database.</summary>
public sealed class PowaSqlTests
{
    [Fact]
    public void A_stage_goes_into_the_repository_only_with_a_powa_of_its_major_minor()
    {
        var node = PowaSql.For(new PowaVersion(5, 1, "5.1.2"), "public");
        Assert.Null(SnapshotStore.VersionProblem(node, "5.1.2", "5.1.2"));
        Assert.Null(SnapshotStore.VersionProblem(node, "5.3.0", "5.3.1"));   // micro versions share their tables
        Assert.Null(SnapshotStore.VersionProblem(node, null, "5.3.0"));      // a spool file of an earlier build: not known
        Assert.Null(SnapshotStore.VersionProblem(node, "5.1.2", null));      // the repository's version not read
        Assert.Equal("the remote server has powa 5.1.2 but the repository has powa 5.3.0: they must have the same major.minor version",
            SnapshotStore.VersionProblem(node, "5.1.2", "5.3.0"));
        Assert.Equal("the remote server has powa 5.3.0 but the repository has powa 5.1.2: they must have the same major.minor version",
            SnapshotStore.VersionProblem(node, "5.3.0", "5.1.2"));
        Assert.Equal("the powa extension is not installed on the remote server any more", SnapshotStore.VersionProblem(node, "", "5.1.2"));
        Assert.StartsWith("the repository now has powa 4.1.4, of another major version than when this node started (5.1.2)",
            SnapshotStore.VersionProblem(node, "4.1.4", "4.1.4"));
    }

    [Fact]
    public void The_sql_follows_the_major_and_the_schema_it_is_given()
    {
        var p4 = PowaSql.For(new PowaVersion(4, 1, "4.1.4"), "public");
        var p5 = PowaSql.For(new PowaVersion(5, 1, "5.1.2"), "\"My Powa\"");
        Assert.IsType<Powa4Sql>(p4);
        Assert.IsType<Powa5Sql>(p5);
        Assert.Contains("FROM public.powa_functions", p4.Datasources);
        Assert.Contains("UPDATE public.powa_extensions ", p4.SaveExtensionVersions);
        Assert.Null(p4.PerDatabaseDatasources);
        Assert.Contains("FROM \"My Powa\".powa_functions", p5.Datasources);
        Assert.Contains("UPDATE \"My Powa\".powa_extension_config ", p5.SaveExtensionVersions);
        Assert.Contains("\"My Powa\".powa_db_functions($1, $2)", p5.PerDatabaseDatasources);
        Assert.Contains("\"My Powa\".powa_catalog_functions($1, $2, '1 year')", p5.PerDatabaseDatasources);
        Assert.Contains("\"My Powa\".powa_roles", p5.NotifySenders);
        Assert.Contains("\"My Powa\".powa_take_snapshot($1)", p5.TakeSnapshot);
        // The coordinator's resync reads no password.
        Assert.Contains(" password,", p4.ActiveServers());
        Assert.DoesNotContain("password", p4.ActiveServers(passwords: false));
    }

    [Theory]
    [InlineData("3.2.0", "powa 3.2.0; powa-cluster needs powa 4.0 or later")]
    [InlineData("6.0.0", "powa 6.0.0, newer than powa-cluster supports (powa 4 and 5): upgrade powa-cluster")]
    public void An_unsupported_powa_names_its_version(string version, string message)
    {
        var e = Assert.Throws<UnsupportedPowaException>(() => PowaSql.For(PowaVersion.Parse(version)!, "public"));
        Assert.Equal(message, e.Message);
    }

    [Fact]
    public void Cleanup_placeholders_take_the_remote_schema_of_their_extension()
    {
        var schemas = new Dictionary<string, string> { ["pg_qualstats"] = "\"stats\"", ["powa"] = "public" };
        Assert.Equal("SELECT \"stats\".pg_qualstats_reset()", RemoteQueries.ResolveSchemas("SELECT {pg_qualstats}.pg_qualstats_reset()", schemas));
        Assert.Equal("SELECT pg_qualstats_reset()", RemoteQueries.ResolveSchemas("SELECT pg_qualstats_reset()", schemas));
        var e = Assert.Throws<ArgumentException>(() => RemoteQueries.ResolveSchemas("SELECT {pg_track_settings}.x()", schemas));
        Assert.Equal("extension pg_track_settings is not installed on the remote server", e.Message);
    }

    [Fact]
    public void A_per_database_datasource_applies_by_its_databases_its_freshness_and_a_refresh()
    {
        var module = new DbDatasource("pg_stat_all_tables", false, "SELECT 1", "t", ["int"], null, []);
        var onlyApp = module with { DbNames = ["app"] };
        var catalog = new DbDatasource("pg_class", true, "SELECT 1", "t", ["int"], null, ["fresh"]);
        Assert.True(module.AppliesTo("any", null));
        Assert.True(onlyApp.AppliesTo("app", null));
        Assert.False(onlyApp.AppliesTo("other", null));
        Assert.False(catalog.AppliesTo("fresh", null));
        Assert.True(catalog.AppliesTo("stale", null));
        var all = new CatalogRefresh(new HashSet<string>());
        var some = new CatalogRefresh(new HashSet<string> { "fresh" });
        Assert.True(catalog.AppliesTo("fresh", some));
        Assert.False(catalog.AppliesTo("stale", some));
        Assert.True(catalog.AppliesTo("stale", all));
        Assert.Empty(CatalogRefresh.Merge(some, all).DbNames);
        Assert.Equal(["a", "fresh"], CatalogRefresh.Merge(some, new CatalogRefresh(new HashSet<string> { "a" })).DbNames.Order());
    }

    [Fact]
    public void A_per_database_export_casts_every_column_to_the_repository_type_with_one_timestamp()
    {
        var ds = new DbDatasource("pg_stat_user_functions", false, "SELECT funcid, calls FROM pg_catalog.pg_stat_user_functions",
            "public.powa_user_functions_src_tmp", ["integer", "timestamp with time zone", "oid", "oid", "bigint"], null, []);
        var sql = DatabaseReader.ExportSql(ds);
        Assert.Equal("COPY (SELECT s.c1::integer, s.c2::timestamp with time zone, s.c3::oid, s.c4::oid, s.c5::bigint FROM " +
                     "(SELECT pg_catalog.current_setting('powa_cluster.srvid')::integer AS srvid, " +
                     "pg_catalog.current_setting('powa_cluster.snapshot_ts')::timestamptz AS ts, d.dbid, src.* FROM " +
                     "(SELECT funcid, calls FROM pg_catalog.pg_stat_user_functions) src CROSS JOIN (SELECT oid AS dbid FROM " +
                     "pg_catalog.pg_database WHERE datname = pg_catalog.current_database()) d) s(c1, c2, c3, c4, c5)) TO STDOUT (FORMAT binary)", sql);
        // The srvid and the snapshot's one ts are the connection's settings, so the text is the same for every
        // snapshot (pg_stat_statements keys a COPY by its text).
        var ts = new DateTime(2026, 11, 26, 10, 0, 5, DateTimeKind.Utc).AddTicks(1234560);
        var settings = DatabaseReader.SessionSettings(7, ts);
        Assert.Equal("7", settings[DatabaseReader.SrvIdSetting]);
        Assert.Equal("2026-11-26 10:00:05.123456+00", settings[DatabaseReader.TimestampSetting]);
        Assert.Equal("pg_catalog", settings["search_path"]);
        // A catalog has no ts; pg_proc's (an oidvector column) goes in text.
        var proc = ds with { Catalog = true, Columns = ["integer", "oid", "oid", "oidvector"] };
        Assert.True(DatabaseReader.NeedsText(proc));
        Assert.False(DatabaseReader.NeedsText(ds));
        var procSql = DatabaseReader.ExportSql(proc, text: true);
        Assert.Contains("(SELECT pg_catalog.current_setting('powa_cluster.srvid')::integer AS srvid, d.dbid, src.*", procSql);
        Assert.EndsWith("s(c1, c2, c3, c4)) TO STDOUT", procSql);
    }

    [Fact]
    public void Refresh_db_cat_and_force_snapshot_arguments_are_checked_as_the_reference_does()
    {
        Assert.Equal((3, (string?)null), CollectorProtocol.ParseForceSnapshot(["3"]));
        Assert.Equal("Command \"[]\" malformed", CollectorProtocol.ParseForceSnapshot([]).Error);
        Assert.Equal("invalid remote server id x", CollectorProtocol.ParseForceSnapshot(["x"]).Error);
        var (id, dbs, error) = CollectorProtocol.ParseRefreshDbCat(["4", "2", "a", "b"]);
        Assert.Equal(4, id);
        Assert.Equal(["a", "b"], dbs);
        Assert.Null(error);
        Assert.Empty(CollectorProtocol.ParseRefreshDbCat(["4", "0"]).DbNames);
        Assert.Equal("Command \"['4']\" malformed", CollectorProtocol.ParseRefreshDbCat(["4"]).Error);
        Assert.Equal("invalid remote server id a", CollectorProtocol.ParseRefreshDbCat(["a", "1", "x"]).Error);
        Assert.Equal("invalid number of databases n", CollectorProtocol.ParseRefreshDbCat(["4", "n"]).Error);
        Assert.Equal("Caller asked for 1 db, but found 2: ['a', \"it's\"]", CollectorProtocol.ParseRefreshDbCat(["4", "1", "a", "it's"]).Error);
    }
}
