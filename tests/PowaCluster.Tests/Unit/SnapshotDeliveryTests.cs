using Xunit;
using PowaCluster.Collector.Actors;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Postgres;
using PowaCluster.Collector.Spooling;
using PowaCluster.Tests.Support;
using static PowaCluster.Collector.Actors.ServerDo;

namespace PowaCluster.Tests.Unit;

/// <summary>
/// SnapshotDelivery alone (ServerStateTests covers it through the state's events): the order in which a
/// server's snapshots reach the writers, the spool and the next node, with given times and a fake world.
/// </summary>
public class SnapshotDeliveryTests
{
    // Any instant: nothing here depends on the day it runs.
    static readonly DateTime T0 = new(2031, 3, 4, 5, 6, 7, DateTimeKind.Utc);
    static readonly StoreResult StoredOk = new(StoreOutcome.Stored, SnapshotPlan.Empty, 0, [], Sequence: 100);
    readonly FakeServerSurroundings _world = new() { Backlog = new BacklogView(0, 0, null, "/spool/7") };
    readonly List<ServerAction> _actions = [];
    readonly SnapshotDelivery _d;

    public SnapshotDeliveryTests() =>
        _d = new SnapshotDelivery(new CollectorSettings { MaxQueuedSnapshots = 3 }, _world, new ServerRecord(T0), () => 7, _actions.Add);

    List<ServerAction> Take()
    {
        var taken = _actions.ToList();
        _actions.Clear();
        return taken;
    }

    long ReadOne(DateTime takenAtUtc)
    {
        var seq = _d.NextSequence();
        _d.Read(seq, takenAtUtc, spooled: false, spoolError: null, detail: "");
        return seq;
    }

    [Fact]
    public void One_snapshot_at_a_writer_at_a_time_the_oldest_first()
    {
        var first = ReadOne(T0);
        var second = ReadOne(T0.AddSeconds(10));
        Assert.Equal(first, Assert.Single(Take().OfType<Store>()).Sequence);
        Assert.Equal(2, _d.Unstored);
        Assert.True(_d.AtWriterNow(first));
        Assert.False(_d.AtWriterNow(second));

        Assert.False(_d.Stored(second, StoredOk, replayed: false)); // not at a writer: a stale answer, nothing done
        Assert.Empty(Take());
        Assert.True(_d.Stored(first, StoredOk, replayed: false));
        _d.StoreNext();
        Assert.Equal(second, Assert.Single(Take().OfType<Store>()).Sequence);
    }

    [Fact]
    public void The_spools_oldest_goes_before_a_newer_queue_head_but_only_as_a_probe_while_the_repository_is_down()
    {
        var first = ReadOne(T0);
        Take();
        // The repository fails under the first: it is spooled, and the outage begins.
        Assert.Equal(SnapshotDelivery.NotStoredAs.Spooled, _d.NotStored(first, "connection refused", spooled: true, null, null, stopping: false));
        _world.Backlog = new BacklogView(1, 100, T0, "/spool/7");
        ReadOne(T0.AddSeconds(10));
        Assert.Empty(Take().OfType<Replay>()); // no probe outside a tick
        Assert.True(_d.Spooling);

        _d.Tick();
        var replay = Assert.Single(Take().OfType<Replay>());
        Assert.True(_d.AtWriterNow(replay.Sequence));
    }

    [Fact]
    public void Entering_an_outage_spools_the_queue_and_what_the_disk_did_not_take_goes_back_first()
    {
        var first = ReadOne(T0);
        var second = ReadOne(T0.AddSeconds(10));
        var third = ReadOne(T0.AddSeconds(20));
        Take();
        _d.NotStored(first, "connection refused", spooled: true, null, null, stopping: false);
        Assert.Equal([second, third], Assert.Single(Take().OfType<ServerDo.SpoolQueue>()).Sequences);
        Assert.True(_d.Busy);

        var fourth = ReadOne(T0.AddSeconds(30)); // read meanwhile: waits, the spool's oldest is older
        _world.Backlog = new BacklogView(2, 200, T0, "/spool/7");
        _d.QueueSpooled(written: 1, error: "No space left on device");
        var after = Take();
        Assert.Contains(after, a => a is Say { Level: NoteLevel.Error } say && say.Text.Contains("No space left on device"));
        Assert.Empty(after.OfType<Store>());
        Assert.Equal(2, _d.Unstored);

        // The spool replayed (by another's hand): the one the disk refused goes before the one read meanwhile.
        _world.Backlog = new BacklogView(0, 0, null, "/spool/7");
        _d.Tick();
        Assert.Equal(third, Assert.Single(Take().OfType<Store>()).Sequence);
        Assert.True(_d.Stored(third, StoredOk, replayed: false));
        _d.StoreNext();
        Assert.Equal(fourth, Assert.Single(Take().OfType<Store>()).Sequence);
    }

    [Fact]
    public void Handed_off_the_queue_and_the_one_at_a_writer_go_to_the_next_node_from_the_oldest()
    {
        ReadOne(T0);
        var second = ReadOne(T0.AddSeconds(10));
        Take();
        _d.HandOff();
        var actions = Take();
        var over = Assert.Single(actions.OfType<HandOver>());
        Assert.Equal([second], over.Sequences);
        Assert.Equal(T0, over.OldestUtc);
        Assert.Equal(2, over.Left);
        Assert.Contains(actions, a => a is CancelWatchdog);
        Assert.Equal(0, _d.Unstored);

        // Read after the hand-off: straight to the node's writers.
        var late = ReadOne(T0.AddSeconds(20));
        Assert.Equal([late], Assert.Single(Take().OfType<HandOver>()).Sequences);
    }

    [Fact]
    public void A_node_holding_older_spooled_snapshots_goes_first()
    {
        _world.OldestElsewhere = T0;
        ReadOne(T0.AddSeconds(10));
        Assert.Empty(Take().OfType<Store>());
        Assert.True(_d.YieldsTo(T0));
        Assert.False(_d.YieldsTo(T0.AddSeconds(20)));

        _world.OldestElsewhere = null;
        _d.StoreNext();
        Assert.Single(Take().OfType<Store>());
    }
}
