using Google.Protobuf;
using PowaCluster.Collector.Actors;
using PowaCluster.Collector.Postgres;
using W = PowaCluster.Collector.Serialization.Wire;

namespace PowaCluster.Collector.Serialization;

/// <summary>
/// The wire format since powa-cluster 0.2.0: each IWireMessage as its message of wire.proto (Protocol Buffers,
/// whose readers skip the fields they do not know), under a manifest "1:name" that names the message, not its
/// version of the schema: a message changes by adding fields, never by a new manifest.
/// </summary>
static class ProtobufWire
{
    public static string Manifest(IWireMessage o) => o switch
    {
        EnsureCollecting => "1:ensure",
        StopCollecting => "1:stop",
        GetServerStatus => "1:status?",
        ServerStatus => "1:status",
        ForceSnapshot => "1:force",
        ForceSnapshotResult => "1:forced",
        RefreshCatalogs => "1:refresh",
        RefreshCatalogsResult => "1:refreshed",
        ServerHandedOff => "1:handed-off",
        Reload => "1:reload",
        ServerStateShared => "1:server-state",
        BacklogHeld => "1:backlog-held",
        BacklogDrained => "1:backlog-drained",
        BacklogTurn => "1:backlog-turn",
        _ => throw new ArgumentException($"{o.GetType().Name} has no message in wire.proto"),
    };

    public static byte[] ToBinary(IWireMessage o) => ToProto(o).ToByteArray();

    static IMessage ToProto(IWireMessage o)
    {
        switch (o)
        {
            case EnsureCollecting m: return new W.EnsureCollecting { SrvId = m.SrvId, RowVersion = m.RowVersion, Refresh = m.Refresh };
            case StopCollecting m: return new W.StopCollecting { SrvId = m.SrvId };
            case GetServerStatus m: return new W.GetServerStatus { SrvId = m.SrvId };
            case ServerStatus m:
                var s = new W.ServerStatus
                {
                    SrvId = m.SrvId,
                    Status = m.Status,
                    Snapshots = m.Snapshots,
                    FailedSnapshots = m.FailedSnapshots,
                    SpooledSnapshots = m.SpooledSnapshots,
                    SpooledBytes = m.SpooledBytes,
                };
                if (m.Node is not null) s.Node = m.Node;
                if (m.LastSnapshot is { } last) s.LastSnapshotUnixMs = last.ToUnixTimeMilliseconds();
                if (m.LastError is not null) s.LastError = m.LastError;
                if (m.OldestSpooled is { } oldest) s.OldestSpooledUnixMs = oldest.ToUnixTimeMilliseconds();
                return s;
            case ForceSnapshot m: return new W.ForceSnapshot { SrvId = m.SrvId };
            case ForceSnapshotResult m: return new W.ForceSnapshotResult { SrvId = m.SrvId, Started = m.Started, Message = m.Message };
            case RefreshCatalogs m: return new W.RefreshCatalogs { SrvId = m.SrvId, DbNames = { m.DbNames } };
            case RefreshCatalogsResult m: return new W.RefreshCatalogsResult { SrvId = m.SrvId, Registered = m.Registered, Message = m.Message };
            case ServerHandedOff m: return new W.ServerHandedOff { SrvId = m.SrvId };
            case Reload: return new W.Reload();
            case ServerStateShared m:
                var shared = new W.ServerStateShared { SrvId = m.SrvId, Plan = m.Plan is null ? null : ToProto(m.Plan) };
                if (m.LastTakenUtc is { } taken) shared.LastTakenUnixMs = UnixMs(taken);
                return shared;
            case BacklogHeld m: return new W.BacklogHeld { SrvId = m.SrvId, Holder = m.Holder, OldestUnixMs = UnixMs(m.OldestUtc), Snapshots = m.Snapshots };
            case BacklogDrained m: return new W.BacklogDrained { SrvId = m.SrvId, Holder = m.Holder };
            case BacklogTurn m:
                var turn = new W.BacklogTurn { SrvId = m.SrvId };
                if (m.UntilUtc is { } until) turn.UntilUnixMs = UnixMs(until);
                return turn;
            default: throw new ArgumentException($"{o.GetType().Name} has no message in wire.proto");
        }
    }

    /// <summary>Null: not a manifest of this format.</summary>
    public static IWireMessage? FromBinary(byte[] bytes, string manifest)
    {
        try
        {
            return manifest switch
            {
                "1:ensure" => FromProto(W.EnsureCollecting.Parser.ParseFrom(bytes)),
                "1:stop" => new StopCollecting(W.StopCollecting.Parser.ParseFrom(bytes).SrvId),
                "1:status?" => new GetServerStatus(W.GetServerStatus.Parser.ParseFrom(bytes).SrvId),
                "1:status" => FromProto(W.ServerStatus.Parser.ParseFrom(bytes)),
                "1:force" => new ForceSnapshot(W.ForceSnapshot.Parser.ParseFrom(bytes).SrvId),
                "1:forced" => FromProto(W.ForceSnapshotResult.Parser.ParseFrom(bytes)),
                "1:refresh" => FromProto(W.RefreshCatalogs.Parser.ParseFrom(bytes)),
                "1:refreshed" => FromProto(W.RefreshCatalogsResult.Parser.ParseFrom(bytes)),
                "1:handed-off" => new ServerHandedOff(W.ServerHandedOff.Parser.ParseFrom(bytes).SrvId),
                "1:server-state" => FromProto(W.ServerStateShared.Parser.ParseFrom(bytes)),
                "1:backlog-held" => FromProto(W.BacklogHeld.Parser.ParseFrom(bytes)),
                "1:backlog-turn" => W.BacklogTurn.Parser.ParseFrom(bytes) is var t ? new BacklogTurn(t.SrvId, t.HasUntilUnixMs ? FromUnixMs(t.UntilUnixMs) : null) : null,
                "1:backlog-drained" => W.BacklogDrained.Parser.ParseFrom(bytes) is var d ? new BacklogDrained(d.SrvId, d.Holder) : null,
                "1:reload" => W.Reload.Parser.ParseFrom(bytes) is not null ? Reload.Instance : null, // parsed: malformed bytes are refused
                _ => null,
            };
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new SerializationException($"powa-cluster message \"{manifest}\" is not what its manifest says: {e.Message}");
        }
    }

    static EnsureCollecting FromProto(W.EnsureCollecting m) => new(m.SrvId, m.RowVersion, m.Refresh);

    static ForceSnapshotResult FromProto(W.ForceSnapshotResult m) => new(m.SrvId, m.Started, m.Message);

    static RefreshCatalogsResult FromProto(W.RefreshCatalogsResult m) => new(m.SrvId, m.Registered, m.Message);

    static ServerStatus FromProto(W.ServerStatus m) => new(m.SrvId, m.Status, m.HasNode ? m.Node : null,
        m.HasLastSnapshotUnixMs ? DateTimeOffset.FromUnixTimeMilliseconds(m.LastSnapshotUnixMs) : null,
        m.HasLastError ? m.LastError : null, m.Snapshots, m.FailedSnapshots, m.SpooledSnapshots, m.SpooledBytes,
        m.HasOldestSpooledUnixMs ? DateTimeOffset.FromUnixTimeMilliseconds(m.OldestSpooledUnixMs) : null);

    static RefreshCatalogs FromProto(W.RefreshCatalogs m) => m.DbNames.Count > WireLimits.MaxDatabaseNames
        ? throw new SerializationException($"REFRESH_DB_CAT with {m.DbNames.Count} database names")
        : new RefreshCatalogs(m.SrvId, [.. m.DbNames]);

    static long UnixMs(DateTime utc) => new DateTimeOffset(DateTime.SpecifyKind(utc, DateTimeKind.Utc)).ToUnixTimeMilliseconds();

    static DateTime FromUnixMs(long ms) => DateTimeOffset.FromUnixTimeMilliseconds(ms).UtcDateTime;

    static W.SnapshotPlan ToProto(SnapshotPlan p)
    {
        var w = new W.SnapshotPlan();
        foreach (var d in p.Global)
        {
            var g = new W.Datasource { Name = d.Name, External = d.External, FunctionName = d.FunctionName };
            if (d.QuerySource is not null) g.QuerySource = d.QuerySource;
            if (d.QueryCleanup is not null) g.QueryCleanup = d.QueryCleanup;
            if (d.TmpSchema is not null) g.TmpSchema = d.TmpSchema;
            w.Global.Add(g);
        }
        foreach (var d in p.PerDatabase)
        {
            var x = new W.DbDatasource
            {
                Name = d.Name,
                Catalog = d.Catalog,
                QuerySource = d.QuerySource,
                Columns = { d.Columns },
                SomeDatabases = d.DbNames is not null,
                ExcludedDbNames = { d.ExcludedDbNames },
            };
            if (d.Target is not null) x.Target = d.Target;
            if (d.DbNames is not null) x.DbNames.Add(d.DbNames);
            w.PerDatabase.Add(x);
        }
        return w;
    }

    static SnapshotPlan FromProto(W.SnapshotPlan w) => new(
        w.Global.Select(g => new Datasource(g.Name, g.External, g.HasQuerySource ? g.QuerySource : null, g.HasQueryCleanup ? g.QueryCleanup : null,
            g.FunctionName, g.HasTmpSchema ? g.TmpSchema : null)).ToList(),
        w.PerDatabase.Select(d => new DbDatasource(d.Name, d.Catalog, d.QuerySource, d.HasTarget ? d.Target : null, [.. d.Columns],
            d.SomeDatabases ? [.. d.DbNames] : null, [.. d.ExcludedDbNames])).ToList());

    static ServerStateShared FromProto(W.ServerStateShared m) => new(m.SrvId, m.Plan is null ? null : FromProto(m.Plan),
        m.HasLastTakenUnixMs ? FromUnixMs(m.LastTakenUnixMs) : null);

    static BacklogHeld FromProto(W.BacklogHeld m) => new(m.SrvId, m.Holder, FromUnixMs(m.OldestUnixMs), m.Snapshots);
}
