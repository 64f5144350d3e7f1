using Xunit;
using Microsoft.Extensions.Time.Testing;
using PowaCluster.Collector.Actors;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Postgres;
using PowaCluster.Collector.Spooling;
using PowaCluster.Tests.Support;
using static PowaCluster.Collector.Actors.ServerDo;

namespace PowaCluster.Tests.Unit;

/// <summary>
/// ServerState alone: every phase change and every queue, spool, replay, catch-up and hand-off rule, with
/// fake time and a fake world, no actor and no PostgreSQL.
/// </summary>
public class ServerStateTests
{
    // Any instant: nothing here depends on the day it runs.
    readonly FakeTimeProvider _time = new(new DateTimeOffset(2031, 3, 4, 5, 6, 7, TimeSpan.Zero));
    readonly FakeServerSurroundings _world = new();
    readonly CollectorSettings _settings = new() { MaxQueuedSnapshots = 3 };
    static readonly PowaVersion Powa = new(4, 1, "4.1.4");
    static readonly ServerConfig Row = new(7, "127.0.0.7", 5432, "powa", "secret", "powa", 10, "seven");
    static readonly StoreResult StoredOk = new(StoreOutcome.Stored, SnapshotPlan.Empty, 0, [], Sequence: 100);

    ServerState NewState() => new(_settings, Powa, _world, _time, () => 0.5);

    DateTime Now => _time.GetUtcNow().UtcDateTime;

    static T One<T>(IReadOnlyList<ServerAction> actions) where T : ServerAction => Assert.Single(actions.OfType<T>());

    /// <summary>New → Loading → Connecting → Restoring → Collecting, with a last snapshot 5 s ago (first tick in 5 s).</summary>
    ServerState Collecting(ServerState? s = null)
    {
        s ??= NewState();
        var a = s.Ensure(7, "v1", refresh: false);
        Assert.Contains(a, x => x is ClaimSpool);
        Assert.Contains(a, x => x is ReadRow);
        Assert.Equal(ServerPhase.Loading, s.Phase);
        a = s.RowRead(new ServerRow(Row, "v1"), null, null);
        var ask = One<AskToConnect>(a);
        Assert.Equal(ServerPhase.Connecting, s.Phase);
        Assert.Equal(Powa, One<Open>(s.ConnectGranted(ask.Generation)).RepositoryPowa);
        a = s.Connected(ask.Generation);
        Assert.Contains(a, x => x is Restore);
        Assert.Contains(a, x => x is ConnectDone);
        Assert.Equal(ServerPhase.Restoring, s.Phase);
        a = s.Restored(new LastSnapshot(true, _time.GetUtcNow().AddSeconds(-5), 1), SnapshotPlan.Empty, null);
        _due = One<ScheduleTick>(a).DueUtc;
        Assert.Equal(Now.AddSeconds(5), _due);
        Assert.Equal(ServerPhase.Collecting, s.Phase);
        return s;
    }

    /// <summary>New → Loading → Connecting → Restoring, the repository's answer not given yet.</summary>
    ServerState Restoring()
    {
        var s = NewState();
        s.Ensure(7, "v1", false);
        s.RowRead(new ServerRow(Row, "v1"), null, null);
        s.Connected(1);
        Assert.Equal(ServerPhase.Restoring, s.Phase);
        return s;
    }

    DateTime _due; // the last tick scheduled

    /// <summary>The tick, at its due time (or now, when that is past).</summary>
    IReadOnlyList<ServerAction> TickNow(ServerState s)
    {
        if (_due > Now) _time.SetUtcNow(new DateTimeOffset(_due, TimeSpan.Zero));
        var a = s.Tick(s.Generation);
        if (a.OfType<ScheduleTick>().LastOrDefault() is { } t) _due = t.DueUtc;
        return a;
    }

    long TickRead(ServerState s) => One<Read>(TickNow(s)).Sequence;

    IReadOnlyList<ServerAction> ReadDone(ServerState s, long seq, bool spooled = false, string? spoolError = null) =>
        s.Read(seq, Now, new HashSet<string>(), spooled, spoolError, "");

    // ---- phases -------------------------------------------------------------------------------------

    [Fact]
    public void The_phase_table_allows_the_drawn_moves_and_no_other()
    {
        Assert.True(ServerState.Allowed(ServerPhase.New, ServerPhase.Loading));
        Assert.True(ServerState.Allowed(ServerPhase.Collecting, ServerPhase.Waiting));
        Assert.True(ServerState.Allowed(ServerPhase.Waiting, ServerPhase.Connecting));
        Assert.True(ServerState.Allowed(ServerPhase.Stopping, ServerPhase.Stopped));
        Assert.False(ServerState.Allowed(ServerPhase.New, ServerPhase.Collecting));
        Assert.False(ServerState.Allowed(ServerPhase.Loading, ServerPhase.Collecting));
        Assert.False(ServerState.Allowed(ServerPhase.Waiting, ServerPhase.Collecting));
        Assert.False(ServerState.Allowed(ServerPhase.Stopping, ServerPhase.Collecting));
        foreach (var to in Enum.GetValues<ServerPhase>()) Assert.False(ServerState.Allowed(ServerPhase.Stopped, to));
        // Every phase but Stopped can end.
        foreach (var from in Enum.GetValues<ServerPhase>().Where(p => p != ServerPhase.Stopped))
            Assert.True(ServerState.Allowed(from, ServerPhase.Stopped));
    }

    [Fact]
    public void A_start_goes_through_loading_connecting_and_restoring_to_collecting()
    {
        var s = Collecting();
        Assert.Equal(CollectorStatus.Running, s.Status("node").Status);
        Assert.Equal(1, s.Generation);
    }

    [Fact]
    public void Messages_of_another_phase_or_an_older_connection_change_nothing()
    {
        var s = NewState();
        s.Ensure(7, "v1", false);
        Assert.Empty(s.Tick(0));
        Assert.Empty(s.Restored(new LastSnapshot(true, null), SnapshotPlan.Empty, null));
        Assert.Empty(s.Reconnect());
        Assert.Equal(ServerPhase.Loading, s.Phase);
        s = Collecting();
        Assert.Empty(s.Connected(0));
        Assert.Empty(s.Tick(0));
        Assert.Empty(s.Read(99, Now, new HashSet<string>(), false, null, ""));
        Assert.Empty(s.Stored(99, StoredOk, null));
        Assert.Equal(ServerPhase.Collecting, s.Phase);
    }

    [Fact]
    public void A_first_row_that_cannot_be_read_is_read_again_after_a_backoff_and_a_missing_row_stops()
    {
        var s = NewState();
        s.Ensure(7, "v1", false);
        var retry = One<RetryRowRead>(s.RowRead(null, "no repository", null));
        Assert.Equal(_settings.RetryMinDelay, retry.After); // first failure, jitter 0.5: the minimum
        Assert.Equal(ServerPhase.Loading, s.Phase);
        Assert.Contains(s.RetryRowRead(), x => x is ReadRow);
        Assert.Contains(s.RowRead(null, null, null), x => x is Stop);
        Assert.Equal(ServerPhase.Stopped, s.Phase);
    }

    [Fact]
    public void A_row_that_cannot_be_collected_waits_the_longest_backoff_and_says_why()
    {
        var s = NewState();
        s.Ensure(7, "v1", false);
        var a = s.RowRead(new ServerRow(Row with { Hostname = "/var/run/postgresql" }, "v1"), null, null);
        Assert.Equal(_settings.RetryMaxDelay, One<ScheduleReconnect>(a).After);
        Assert.Contains("socket path", One<Report>(a).Error);
        Assert.Equal(ServerPhase.Waiting, s.Phase);
    }

    [Fact]
    public void A_failed_connection_is_reported_backs_off_and_the_next_attempt_ignores_the_old_ones_answers()
    {
        var s = NewState();
        s.Ensure(7, "v1", false);
        s.RowRead(new ServerRow(Row, "v1"), null, null);
        var a = s.ConnectFailed(1, "cannot connect", setup: false);
        Assert.Contains(a, x => x is ConnectDone { Generation: 1 });
        Assert.Contains(a, x => x is CountConnectFailure);
        Assert.Equal("cannot connect", One<Report>(a).Error);
        Assert.Equal(ServerPhase.Waiting, s.Phase);
        Assert.Equal(_settings.RetryMinDelay, One<ScheduleReconnect>(a).After);
        Assert.Equal(2, One<AskToConnect>(s.Reconnect()).Generation);
        // The first attempt's late answers: not this connection's.
        Assert.Empty(s.Connected(1));
        Assert.Contains(s.ConnectGranted(1), x => x is ConnectDone { Generation: 1 });
        // A setup failure (another powa) reads the row again: the repository's powa may have changed too. The backoff doubles.
        var second = s.ConnectFailed(2, "powa 5 there", setup: true);
        Assert.Contains(second, x => x is ReadRow);
        Assert.Equal(_settings.RetryMinDelay * 2, One<ScheduleReconnect>(second).After);
    }

    [Fact]
    public void A_server_not_registered_in_powa_snapshot_metas_waits_the_longest_backoff()
    {
        var s = Restoring();
        var a = s.Restored(new LastSnapshot(false, null), SnapshotPlan.Empty, null);
        Assert.Equal(_settings.RetryMaxDelay, One<ScheduleReconnect>(a).After);
        Assert.Equal(ServerPhase.Waiting, s.Phase);
        Assert.Empty(a.OfType<Report>()); // the repository is where the error would go
    }

    [Fact]
    public void A_reconnection_while_the_repository_is_down_goes_on_with_the_plan_and_schedule_it_had()
    {
        var s = Restoring();
        var plan = new SnapshotPlan([new Datasource("pg_stat_statements", false, "powa_statements_src", null, "powa_statements_snapshot", "public")], []);
        _due = One<ScheduleTick>(s.Restored(new LastSnapshot(true, _time.GetUtcNow().AddSeconds(-5), 1), plan, null)).DueUtc;
        var seq = TickRead(s);
        var readAt = Now;
        _time.Advance(TimeSpan.FromSeconds(2));
        s.ReadFailed(seq, "remote gone");
        Assert.Equal(ServerPhase.Waiting, s.Phase);

        s.Reconnect();
        s.Connected(s.Generation);
        var a = s.Restored(null, SnapshotPlan.Empty, "repository: connection refused");
        Assert.Equal(ServerPhase.Collecting, s.Phase);
        Assert.Contains(a, x => x is Say { Text: var t } && t.Contains("collecting with the plan it had", StringComparison.Ordinal));
        // The next snapshot one interval after the last one read, not at once: no double.
        _due = One<ScheduleTick>(a).DueUtc;
        Assert.Equal(readAt.AddSeconds(Row.Frequency), _due);
        Assert.Same(plan, One<Read>(TickNow(s)).Plan);
    }

    [Fact]
    public void A_server_never_collected_here_waits_for_the_repository_to_give_its_schedule()
    {
        var s = Restoring();
        var a = s.Restored(null, SnapshotPlan.Empty, "repository: connection refused");
        Assert.Equal(ServerPhase.Waiting, s.Phase);
        Assert.Contains(a, x => x is ScheduleReconnect);
    }

    static readonly SnapshotPlan SavedPlan =
        new([new Datasource("pg_stat_statements", false, "powa_statements_src", null, "powa_statements_snapshot", "public")], []);

    [Fact]
    public void A_start_during_an_outage_collects_into_the_spool_with_the_row_plan_and_last_time_the_node_saved()
    {
        var lastTaken = Now.AddSeconds(-4);
        _world.Saved = new CachedServer(new ServerRow(Row, "v1"), SavedPlan, Now.AddSeconds(-14));
        _world.Backlog = new BacklogView(1, 100, lastTaken, "/spool", lastTaken); // spooled before the restart
        var s = NewState();
        s.Ensure(7, "v1", false);
        var a = s.RowRead(null, "cannot connect to the repository: connection refused", null);
        Assert.Equal(ServerPhase.Connecting, s.Phase);
        Assert.Contains(a, x => x is Say { Text: var t } && t.Contains("the row this node saved", StringComparison.Ordinal));
        Assert.Equal(Row, s.Config);
        s.Connected(One<AskToConnect>(a).Generation);
        a = s.Restored(null, SnapshotPlan.Empty, "repository: connection refused");
        Assert.Equal(ServerPhase.Collecting, s.Phase);
        // One interval after the last one taken (on this node before its restart, or on the node that handed it off).
        _due = One<ScheduleTick>(a).DueUtc;
        Assert.Equal(lastTaken.AddSeconds(Row.Frequency), _due);
        a = TickNow(s);
        var read = One<Read>(a);
        Assert.Same(SavedPlan, read.Plan);
        Assert.True(read.ToSpool);
        Assert.Single(a.OfType<Replay>()); // the spool's oldest probes the repository
        Assert.Equal(CollectorStatus.NoRepository, s.Record.Status);
    }

    [Fact]
    public void A_start_during_an_outage_without_a_saved_plan_or_spool_waits_for_the_repository()
    {
        _world.Saved = new CachedServer(new ServerRow(Row, "v1"), null, null);
        _world.Backlog = new BacklogView(0, 0, null, "/spool");
        var s = NewState();
        s.Ensure(7, "v1", false);
        s.Connected(One<AskToConnect>(s.RowRead(null, "refused", null)).Generation);
        Assert.Contains(s.Restored(null, SnapshotPlan.Empty, "refused"), x => x is ScheduleReconnect);
        Assert.Equal(ServerPhase.Waiting, s.Phase);

        _world.Saved = new CachedServer(new ServerRow(Row, "v1"), SavedPlan, null);
        _world.Backlog = null;
        var t = NewState();
        t.Ensure(7, "v1", false);
        t.Connected(One<AskToConnect>(t.RowRead(null, "refused", null)).Generation);
        t.Restored(null, SnapshotPlan.Empty, "refused");
        Assert.Equal(ServerPhase.Waiting, t.Phase);
    }

    [Fact]
    public void A_handed_off_server_keeps_its_schedule_from_the_time_its_last_snapshot_was_taken_not_from_the_repositorys()
    {
        // The old node's last snapshot (taken 3 s ago) is not stored yet: the repository's snapts is 13 s old.
        _world.Saved = new CachedServer(null, null, Now.AddSeconds(-3));
        var s = Restoring();
        _due = One<ScheduleTick>(s.Restored(new LastSnapshot(true, _time.GetUtcNow().AddSeconds(-13), 1), SnapshotPlan.Empty, null)).DueUtc;
        Assert.Equal(Now.AddSeconds(7), _due);
    }

    [Fact]
    public void While_another_node_holds_an_older_backlog_it_goes_first_and_reads_go_to_the_spool()
    {
        _world.Backlog = new BacklogView(0, 0, null, "/spool");
        var s = Collecting();
        var heldFrom = Now.AddSeconds(-30);
        _world.OldestElsewhere = heldFrom;
        Assert.True(s.YieldsTo(heldFrom));                      // this entity holds nothing yet
        var read = One<Read>(TickNow(s));
        Assert.True(read.ToSpool);
        _world.Backlog = new BacklogView(1, 100, Now, "/spool", Now);
        Assert.Empty(s.Read(read.Sequence, Now, new HashSet<string>(), spooled: true, null, "").OfType<Replay>());
        Assert.True(s.YieldsTo(heldFrom));
        Assert.False(s.YieldsTo(Now.AddSeconds(1)));            // a newer backlog elsewhere waits for this one

        _world.OldestElsewhere = null;
        Assert.Single(s.BacklogElsewhereGone().OfType<Replay>());
    }

    // ---- reads and stores ---------------------------------------------------------------------------

    [Fact]
    public void A_tick_reads_and_what_was_read_is_stored_one_at_a_time_in_order()
    {
        var s = Collecting();
        var first = TickRead(s);
        Assert.Equal(first, One<Store>(ReadDone(s, first)).Sequence);
        var second = TickRead(s);
        Assert.Empty(ReadDone(s, second).OfType<Store>()); // the first is still at a writer
        Assert.Equal(2, s.Unstored);
        Assert.Equal(second, One<Store>(s.Stored(first, StoredOk, null)).Sequence);
        Assert.Empty(s.Stored(second, StoredOk, null).OfType<Store>());
        Assert.Equal(0, s.Unstored);
        Assert.Equal(2, s.Record.Snapshots);
    }

    [Fact]
    public void A_tick_while_the_last_read_runs_is_skipped_and_caught_up_unless_the_next_is_due_within_half_an_interval()
    {
        var s = Collecting();
        var first = TickRead(s);
        var skipped = TickNow(s);
        Assert.Empty(skipped.OfType<Read>());
        Assert.Contains(skipped, x => x is Say { Level: NoteLevel.Warning } w && w.Text.Contains("still being read"));
        // The read ends 1 s after the skipped tick: the next one is 9 s away, more than half an interval.
        _time.Advance(TimeSpan.FromSeconds(1));
        var caughtUp = One<Read>(ReadDone(s, first)).Sequence;
        ReadDone(s, caughtUp);
        // Again, but the read ends 6 s after the skipped tick: the next one is 4 s away, so no catch-up.
        var third = TickRead(s);
        Assert.Empty(TickNow(s).OfType<Read>());
        _time.Advance(TimeSpan.FromSeconds(6));
        Assert.Empty(ReadDone(s, third).OfType<Read>());
    }

    [Fact]
    public void A_full_queue_skips_ticks_without_a_spool_and_reads_to_the_spool_with_one()
    {
        var s = Collecting();
        var reads = new List<long>();
        for (var i = 0; i < 3; i++)
        {
            var seq = TickRead(s);
            ReadDone(s, seq);
            reads.Add(seq);
        }
        Assert.Equal(3, s.Unstored); // one at a writer, two queued: MaxQueuedSnapshots
        Assert.Contains(TickNow(s), x => x is Say w && w.Text.Contains("3 snapshots wait for the repository"));
        _world.Backlog = new BacklogView(0, 0, null, "/spool");
        Assert.True(One<Read>(TickNow(s)).ToSpool);
    }

    [Fact]
    public void Stage_memory_full_counts_as_a_full_queue()
    {
        var s = Collecting();
        ReadDone(s, TickRead(s));
        _world.RoomToReadAhead = false;
        Assert.Empty(TickNow(s).OfType<Read>());
    }

    [Fact]
    public void A_lost_remote_connection_is_found_at_the_tick_and_reconnects_at_once()
    {
        var s = Collecting();
        _world.RemoteBroken = true;
        var a = TickNow(s);
        Assert.Equal(TimeSpan.Zero, One<ScheduleReconnect>(a).After);
        Assert.Contains(a, x => x is CloseRemote);
        Assert.Equal(ServerPhase.Waiting, s.Phase);
    }

    [Fact]
    public void A_failed_read_loses_that_snapshot_keeps_the_queue_and_gives_the_catalog_refresh_back()
    {
        var s = Collecting();
        var first = TickRead(s);
        ReadDone(s, first);
        s.RefreshCatalogs(["db1"]);
        var second = TickRead(s);
        var a = s.ReadFailed(second, "remote gone");
        Assert.Contains(a, x => x is Count { Outcome: "read_failed" });
        Assert.Equal("remote gone", One<Report>(a).Error);
        Assert.Equal(ServerPhase.Waiting, s.Phase);
        Assert.Equal(1, s.Unstored); // the first still goes to the repository
        s.Stored(first, StoredOk, null);
        s.Reconnect();
        s.Connected(s.Generation);
        _due = One<ScheduleTick>(s.Restored(new LastSnapshot(true, _time.GetUtcNow()), SnapshotPlan.Empty, null)).DueUtc;
        Assert.Equal(["db1"], One<Read>(TickNow(s)).Refresh!.DbNames);
    }

    [Fact]
    public void Force_starts_a_read_refuses_within_10_s_of_the_last_and_while_one_is_in_progress()
    {
        var s = Collecting();
        _time.Advance(TimeSpan.FromSeconds(30));
        var (answer, actions) = s.Force();
        Assert.Equal((true, ServerState.Started), answer);
        Assert.True(One<Read>(actions).Forced);
        Assert.Equal((false, ServerState.InProgress), s.Force().Answer);
        ReadDone(s, One<Read>(actions).Sequence);
        s.Stored(One<Read>(actions).Sequence, StoredOk, null);
        Assert.Equal((false, ServerState.TooSoon), s.Force().Answer);
    }

    [Fact]
    public void A_refused_snapshot_reconnects_and_reports()
    {
        var s = Collecting();
        var seq = TickRead(s);
        ReadDone(s, seq);
        var a = s.Stored(seq, StoredOk with { Outcome = StoreOutcome.Refused, SkipReason = "powa differs" }, null);
        Assert.Equal("powa differs", One<Report>(a).Error);
        Assert.Equal(ServerPhase.Waiting, s.Phase);
        Assert.Equal(1, s.Record.Failed);
    }

    [Fact]
    public void A_watchdog_counts_a_store_that_never_answered_as_not_stored()
    {
        var s = Collecting();
        var seq = TickRead(s);
        ReadDone(s, seq);
        var a = s.StoreTimedOut(seq);
        Assert.Contains(a, x => x is Count { Outcome: "not_stored" });
        Assert.Equal(0, s.Unstored);
        Assert.Empty(s.StoreTimedOut(seq)); // once
    }

    // ---- spool and replay ---------------------------------------------------------------------------

    [Fact]
    public void A_repository_that_goes_down_sends_the_queue_to_the_spool_and_the_next_reads_there()
    {
        _world.Backlog = new BacklogView(0, 0, null, "/spool");
        var s = Collecting();
        var first = TickRead(s);
        ReadDone(s, first);
        var second = TickRead(s);
        ReadDone(s, second);
        var a = s.NotStored(first, "repository down", spooled: true, null, null);
        Assert.Equal([second], One<SpoolQueue>(a).Sequences);
        Assert.True(s.Busy); // being spooled: a stop waits for it
        Assert.Contains(a, x => x is Say { Level: NoteLevel.Warning } w && w.Text.Contains("/spool"));
        _world.Backlog = new BacklogView(1, 100, Now.AddSeconds(-20), "/spool"); // first, spooled by its writer
        var spooled = s.QueueSpooled(1, null);
        Assert.Contains(spooled, x => x is Count { Outcome: "spooled", N: 1 });
        Assert.Empty(spooled.OfType<Replay>()); // the repository is down: only a tick's probe tries it
        _world.Backlog = new BacklogView(2, 200, Now.AddSeconds(-20), "/spool");
        var tick = TickNow(s);
        // The tick's snapshot goes to the spool, and the spool's oldest probes the repository.
        Assert.True(One<Read>(tick).ToSpool);
        var probe = One<Replay>(tick).Sequence;
        // It is stored: the repository is back, and the next spooled one goes at once.
        Assert.Single(s.Stored(probe, StoredOk, replayedSequence: first).OfType<Replay>());
        Assert.Equal(CollectorStatus.Running, s.Record.Status);
    }

    [Fact]
    public void What_the_spool_could_not_take_goes_back_to_the_queue_first_and_is_said_once()
    {
        _world.Backlog = new BacklogView(0, 0, null, "/spool");
        var s = Collecting();
        var first = TickRead(s);
        ReadDone(s, first);
        var second = TickRead(s);
        ReadDone(s, second);
        var third = TickRead(s);
        ReadDone(s, third);
        s.NotStored(first, "down", spooled: true, null, null);
        _world.Backlog = new BacklogView(1, 100, Now.AddMinutes(-1), "/spool"); // first, spooled by its writer
        var fourth = TickRead(s);
        Assert.Contains(ReadDone(s, fourth, spooled: false, spoolError: "disk full"), x => x is Say { Level: NoteLevel.Error });
        var a = s.QueueSpooled(1, "disk full"); // second written, third not
        Assert.DoesNotContain(a, x => x is Say { Level: NoteLevel.Error }); // said once already
        Assert.Empty(a.OfType<Store>()); // the repository is down, and the spool's are older
        Assert.Equal(2, s.Unstored); // third, then fourth
        var probe = One<Replay>(TickNow(s)).Sequence;
        _world.Backlog = _world.Backlog with { Count = 0, OldestUtc = null };
        Assert.Equal(third, One<Store>(s.Stored(probe, StoredOk, second)).Sequence);
    }

    [Fact]
    public void A_spooled_snapshot_older_than_the_queue_head_is_replayed_first_and_a_busy_one_waits()
    {
        var s = Collecting();
        _world.Backlog = new BacklogView(1, 100, Now.AddMinutes(-5), "/spool");
        var seq = TickRead(s);
        var a = ReadDone(s, seq, spooled: true);
        Assert.Contains(a, x => x is DropStages);
        var replay = One<Replay>(a).Sequence;
        Assert.Empty(s.ReplayNotTaken(replay)); // the node's keeper has it
        Assert.Equal(0, s.Unstored);
        var next = One<Read>(TickNow(s));
        Assert.True(next.ToSpool); // older ones wait there: this one goes behind them
        Assert.Single(ReadDone(s, next.Sequence, spooled: true).OfType<Replay>());
    }

    [Fact]
    public void A_spooled_snapshot_the_repository_refuses_for_good_is_dropped_and_the_next_goes()
    {
        var s = Collecting();
        _world.Backlog = new BacklogView(2, 100, Now.AddMinutes(-5), "/spool");
        var replay = One<Replay>(ReadDone(s, TickRead(s), spooled: true)).Sequence;
        var a = s.NotStored(replay, "bad file", spooled: false, Now.AddMinutes(-5), null);
        Assert.Contains(a, x => x is Count { Outcome: "not_stored" });
        Assert.Single(a.OfType<Replay>());
    }

    // ---- rows, leases, stops, hand-offs -------------------------------------------------------------

    [Fact]
    public void A_row_change_reconnects_reschedules_or_waits_for_the_read()
    {
        var s = Collecting();
        var a = s.Ensure(7, "v2", false);
        Assert.Contains(a, x => x is ReadRow);
        a = s.RowRead(new ServerRow(Row with { Frequency = 20 }, "v2"), null, null);
        _due = One<ScheduleTick>(a).DueUtc;
        Assert.Equal(Now.AddSeconds(15), _due); // 20 s after the last snapshot, restored as 5 s ago
        Assert.Equal(ServerPhase.Collecting, s.Phase);
        var seq = TickRead(s);
        s.Ensure(7, "v3", false);
        Assert.Empty(s.RowRead(new ServerRow(Row with { Port = 5433 }, "v3"), null, null)); // waits for the read
        a = ReadDone(s, seq);
        Assert.Contains(a, x => x is CloseRemote);
        Assert.Equal(2, One<AskToConnect>(a).Generation);
        Assert.Equal(ServerPhase.Connecting, s.Phase);
    }

    [Fact]
    public void Reload_reconnects_a_waiting_server_now_and_saves_a_connected_ones_versions()
    {
        var s = Collecting();
        s.Ensure(7, "v1", refresh: true);
        Assert.Contains(s.RowRead(new ServerRow(Row, "v1"), null, null), x => x is ServerDo.SaveVersions);
        s.ReadFailed(TickRead(s), "gone");
        Assert.Equal(ServerPhase.Waiting, s.Phase);
        s.Ensure(7, "v1", refresh: true);
        Assert.Single(s.RowRead(new ServerRow(Row, "v1"), null, null).OfType<AskToConnect>());
    }

    [Fact]
    public void Without_word_from_the_coordinator_for_the_lease_the_server_stops()
    {
        var s = Collecting();
        var lease = _settings.ResyncInterval * _settings.EntityLeaseIntervals;
        _time.Advance(lease - TimeSpan.FromSeconds(1));
        Assert.Empty(s.LeaseCheck());
        s.Ensure(7, "v1", false);
        _time.Advance(lease + TimeSpan.FromSeconds(1));
        Assert.Contains(s.LeaseCheck(), x => x is Stop);
        Assert.Equal(ServerPhase.Stopped, s.Phase);
    }

    [Fact]
    public void A_stop_waits_for_what_is_read_and_stored_then_stops()
    {
        var s = Collecting();
        var seq = TickRead(s);
        Assert.Empty(s.StopCollecting("removed").OfType<Stop>());
        Assert.Equal(ServerPhase.Stopping, s.Phase);
        Assert.Equal("stopping", s.Status("n").Status);
        Assert.Equal((false, $"server 7 is stopping"), s.Force().Answer);
        Assert.Empty(ReadDone(s, seq).OfType<Stop>());
        Assert.Contains(s.Stored(seq, StoredOk, null), x => x is Stop);
        Assert.Equal(ServerPhase.Stopped, s.Phase);
    }

    [Fact]
    public void A_stop_with_a_failing_repository_drops_the_rest_of_the_queue()
    {
        var s = Collecting();
        var first = TickRead(s);
        ReadDone(s, first);
        var second = TickRead(s);
        ReadDone(s, second);
        s.StopCollecting("removed");
        var a = s.NotStored(first, "down", spooled: false, null, null);
        Assert.Equal([second], One<DropStages>(a).Sequences);
        Assert.Contains(a, x => x is Stop);
    }

    [Fact]
    public void An_idle_server_stops_at_once()
    {
        var s = Collecting();
        Assert.Contains(s.StopCollecting("removed"), x => x is Stop);
        var fresh = NewState();
        Assert.Contains(fresh.StopCollecting("removed"), x => x is Stop);
        Assert.Empty(fresh.StopCollecting("again"));
    }

    [Fact]
    public void A_hand_off_gives_the_queue_to_the_writers_and_waits_for_the_read_at_most_half_the_timeout()
    {
        var s = Collecting();
        var first = TickRead(s);
        ReadDone(s, first);
        var second = TickRead(s);
        ReadDone(s, second);
        var third = TickRead(s);
        var a = s.HandOff();
        Assert.Equal([second], One<HandOver>(a).Sequences); // first is at a writer already
        Assert.Equal(_settings.HandOffTimeout / 2, One<StartHandOffDeadline>(a).After);
        Assert.True(s.HandedOff);
        Assert.Equal(ServerPhase.Stopping, s.Phase);
        Assert.Empty(s.HandOff());
        a = ReadDone(s, third);
        Assert.Equal([third], One<HandOver>(a).Sequences);
        Assert.Contains(a, x => x is Stop);
    }

    [Fact]
    public void A_hand_off_deadline_stops_a_server_whose_read_hangs()
    {
        var s = Collecting();
        TickRead(s);
        s.HandOff();
        Assert.Contains(s.HandOffDeadline(), x => x is Stop);
        Assert.Equal(ServerPhase.Stopped, s.Phase);
    }

    [Fact]
    public void An_error_report_carries_the_newest_sequence_seen()
    {
        var s = Collecting(); // restored with sequence 1
        var seq = TickRead(s);
        ReadDone(s, seq);
        s.Stored(seq, StoredOk, null); // 100
        s.ErrorsReported(50);
        Assert.Equal(100, One<Report>(s.ReadFailed(TickRead(s), "gone")).SeenSequence);
    }
}
