namespace PowaCluster.Collector.Postgres;

/// <summary>
/// One per-database datasource of PoWA 5, read in each database of the remote it applies to: a db module
/// (all tables, all indexes, user functions: DbNames null means every database) or a catalog (pg_class,
/// pg_attribute...: ExcludedDbNames are the databases whose copy is still fresh). Target is the quoted
/// *_src_tmp table on the repository (null when it is missing there) and Columns its column types, in order:
/// the remote casts each column to them, so that its binary COPY output loads as it is.
/// </summary>
public sealed record DbDatasource(string Name, bool Catalog, string QuerySource, string? Target, IReadOnlyList<string> Columns,
    IReadOnlyList<string>? DbNames, IReadOnlyList<string> ExcludedDbNames)
{
    public bool SameAs(DbDatasource o) =>
        Name == o.Name && Catalog == o.Catalog && QuerySource == o.QuerySource && Target == o.Target && Columns.SequenceEqual(o.Columns)
        && (DbNames is null ? o.DbNames is null : o.DbNames is not null && DbNames.SequenceEqual(o.DbNames))
        && ExcludedDbNames.SequenceEqual(o.ExcludedDbNames);

    /// <summary>Whether this datasource is read in <paramref name="db"/>, given a catalog refresh asked for.</summary>
    public bool AppliesTo(string db, CatalogRefresh? refresh) => Catalog
        ? refresh is { } r ? r.Covers(db) : !ExcludedDbNames.Contains(db)
        : DbNames is null || DbNames.Contains(db);
}

/// <summary>
/// What a server's snapshot reads: its global datasources (powa_functions) and, in PoWA 5, its per-database
/// ones (powa_db_functions and powa_catalog_functions). Read from the repository when the server's schedule is
/// restored and again with every stored snapshot, for the next one.
/// </summary>
public sealed record SnapshotPlan(IReadOnlyList<Datasource> Global, IReadOnlyList<DbDatasource> PerDatabase)
{
    public static readonly SnapshotPlan Empty = new([], []);

    public bool IsEmpty => Global.Count == 0 && PerDatabase.Count == 0;

    public bool HasCatalogs => PerDatabase.Any(d => d.Catalog);

    /// <summary>The same datasources, in the same order (records compare their lists by reference, not by what they hold).</summary>
    public bool SameAs(SnapshotPlan other) =>
        Global.SequenceEqual(other.Global) && PerDatabase.Count == other.PerDatabase.Count
        && PerDatabase.Zip(other.PerDatabase).All(p => p.First.SameAs(p.Second));

    /// <summary>
    /// The plan without its catalogs: for the snapshots read while one that carries them waits for the
    /// repository (the repository's plan says they are due until that one is stored).
    /// </summary>
    public SnapshotPlan WithoutCatalogs() => HasCatalogs ? this with { PerDatabase = PerDatabase.Where(d => !d.Catalog).ToList() } : this;
}

/// <summary>
/// A catalog refresh asked for with REFRESH_DB_CAT: every database (DbNames empty) or these; it makes the next
/// snapshot read the catalogs of those databases whatever their age.
/// </summary>
public sealed record CatalogRefresh(IReadOnlySet<string> DbNames)
{
    public bool Covers(string db) => DbNames.Count == 0 || DbNames.Contains(db);

    /// <summary>Two requests before a snapshot: every database if either asks for all, else both lists.</summary>
    public static CatalogRefresh Merge(CatalogRefresh? a, CatalogRefresh b) =>
        a is null ? b
        : a.DbNames.Count == 0 || b.DbNames.Count == 0 ? new CatalogRefresh(new HashSet<string>())
        : new CatalogRefresh(a.DbNames.Union(b.DbNames).ToHashSet());
}
