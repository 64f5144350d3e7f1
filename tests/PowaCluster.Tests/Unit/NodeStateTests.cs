using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Postgres;
using PowaCluster.Collector.Spooling;
using Xunit;

namespace PowaCluster.Tests.Unit;

/// <summary>
/// What a node saves beside its spool to start and collect while the repository is down (NodeState): what it
/// keeps, how it merges what the repository and the other nodes say, and the file as input from outside.
/// </summary>
public sealed class NodeStateTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("powa-cluster-state-unit-").FullName;
    const string Repository = "127.0.0.1:5432/powa";
    static readonly DateTime Now = new(2031, 3, 4, 5, 6, 7, DateTimeKind.Utc);
    static readonly ServerRow WithPassword = new(new ServerConfig(3, "127.0.0.3", 5432, "powa", "TopSecret99", "powa", 60, "three"), "1001");
    static readonly ServerRow WithoutPassword = new(new ServerConfig(4, "127.0.0.4", 5432, "powa", null, "powa", 30, null), "1002");
    static readonly SnapshotPlan Plan = new(
        [new Datasource("pg_stat_statements", false, "powa_statements_src", null, "powa_statements_snapshot", "public")],
        [new DbDatasource("pg_class", true, "SELECT 1", "\"public\".\"powa_catalog_class_src_tmp\"", ["oid"], null, ["template1"])]);

    public void Dispose() => Directory.Delete(_root, recursive: true);

    static NodeState Empty => NodeState.Empty(Repository, "7312345678901234567-16384", new PowaVersion(5, 3, "5.3.0"), "public");

    [Fact]
    public void Rows_plans_and_times_taken_come_back_as_saved_in_a_file_for_its_owner_only()
    {
        var state = Empty.WithRows([WithPassword, WithoutPassword], Now, out var changed)
            .WithSeen(3, Plan, Now.AddSeconds(-5), out var seen);
        Assert.True(changed && seen);
        state.Save(_root);

        var path = NodeState.PathFor(_root, Repository);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        var back = NodeState.Load(_root, Repository, out var problem);
        Assert.Null(problem);
        Assert.NotNull(back);
        Assert.Equal(("7312345678901234567-16384", "5.3.0", "public", Now), (back.Identity, back.PowaVersion, back.PowaSchema, back.SavedUtc));
        Assert.Equal(WithPassword, back.Servers[3].Row);
        Assert.True(Plan.SameAs(back.Servers[3].Plan!));
        Assert.Equal(Now.AddSeconds(-5), back.Servers[3].LastTakenUtc);
        // A row without a password has none in the file either (the passfile is the node's, as for libpq).
        Assert.Equal(WithoutPassword, back.Servers[4].Row);
        Assert.DoesNotContain("\"Password\":\"\"", File.ReadAllText(path));
        // Another repository's DSN has no state.
        Assert.Null(NodeState.Load(_root, "127.0.0.1:5433/powa", out problem));
        Assert.Null(problem);
    }

    [Fact]
    public void The_repository_decides_which_servers_stay_and_the_latest_time_taken_wins()
    {
        var state = Empty.WithSeen(4, Plan, null, out _)                 // a plan seen before the rows were read
            .WithRows([WithPassword, WithoutPassword], Now, out _)
            .WithSeen(3, null, Now.AddSeconds(-5), out _);
        Assert.True(Plan.SameAs(state.Servers[4].Plan!));
        state = state.WithSeen(3, null, Now.AddSeconds(-20), out var older);
        Assert.False(older);                                              // an older time taken (another node's) changes nothing
        Assert.Equal(Now.AddSeconds(-5), state.Servers[3].LastTakenUtc);
        state.WithSeen(4, new SnapshotPlan(Plan.Global, Plan.PerDatabase.ToList()), null, out var same);
        Assert.False(same);                                               // the same plan, other lists

        state = state.WithRows([WithoutPassword], Now.AddMinutes(1), out var changed);
        Assert.True(changed);
        Assert.False(state.Servers.ContainsKey(3));                       // removed or deactivated: gone
        Assert.True(Plan.SameAs(state.Servers[4].Plan!));
        state.WithRows([WithoutPassword], Now.AddMinutes(2), out changed);
        Assert.False(changed);
    }

    [Fact]
    public void A_state_file_others_may_write_or_that_does_not_hold_is_refused_by_name()
    {
        Empty.WithRows([WithPassword], Now, out _).Save(_root);
        var path = NodeState.PathFor(_root, Repository);
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupWrite);
        Assert.Null(NodeState.Load(_root, Repository, out var problem));
        Assert.Contains(path, problem);
        Assert.Contains("others may write it", problem);

        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.WriteAllText(path, "{\"Format\":1,\"Repository\":\"127.0.0.1:5432/powa\",\"Powa\":\"5.3.0\",\"Schema\":\"public\",\"Servers\":[{\"Row\":{\"SrvId\":-1}}]}");
        Assert.Null(NodeState.Load(_root, Repository, out problem));
        Assert.Contains("server -1", problem);

        File.WriteAllText(path, "not json");
        Assert.Null(NodeState.Load(_root, Repository, out problem));
        Assert.Contains("cannot be used", problem);

        File.WriteAllText(path, "{\"Format\":1,\"Repository\":\"10.0.0.1:5432/other\",\"Powa\":\"5.3.0\",\"Schema\":\"public\"}");
        Assert.Null(NodeState.Load(_root, Repository, out problem));
        Assert.Contains("it is for 10.0.0.1:5432/other", problem);
    }
}
