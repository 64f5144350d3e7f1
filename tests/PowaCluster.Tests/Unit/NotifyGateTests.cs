using Microsoft.Extensions.Time.Testing;
using PowaCluster.Collector.Control;
using Xunit;

namespace PowaCluster.Tests.Unit;

/// <summary>NotifyGate's bounds per role and per unchecked backend, and its one answer per refused role.</summary>
public sealed class NotifyGateTests
{
    readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));

    static int Admit(NotifyGate gate, int pid, int times, List<GateTicket>? tickets = null)
    {
        var admitted = 0;
        for (var i = 0; i < times; i++)
            if (gate.TryAdmit(pid, out var t))
            {
                admitted++;
                tickets?.Add(t);
            }
        return admitted;
    }

    [Fact]
    public void Twenty_sessions_of_one_login_take_what_one_role_may_and_leave_room_for_powa_web()
    {
        var gate = new NotifyGate(_time);
        for (var pid = 1000; pid < 1020; pid++) gate.Learn(pid, new SenderVerdict(16400, "flood", Allowed: true));
        var admitted = Enumerable.Range(1000, 20).Sum(pid => Admit(gate, pid, 100));
        Assert.Equal(gate.MaxPerRole, admitted);

        gate.Learn(2000, new SenderVerdict(10, "powa", Allowed: true));
        Assert.True(gate.TryAdmit(2000, out _));
        Assert.True(gate.TryAdmit(3000, out _)); // a backend not yet checked (powa-web's next connection)
    }

    [Fact]
    public void Backends_not_yet_checked_get_a_few_slots_each_and_a_share_of_the_gate_in_all()
    {
        var gate = new NotifyGate(_time);
        Assert.Equal(gate.MaxPerUncheckedSender * 20, Enumerable.Range(1000, 20).Sum(pid => Admit(gate, pid, 100)));
        var storm = Enumerable.Range(5000, 1000).Sum(pid => Admit(gate, pid, 1));
        Assert.Equal(gate.MaxUnchecked - gate.MaxPerUncheckedSender * 20, storm);
        Assert.False(gate.TryAdmit(9999, out _));

        // A checked role still gets in: the unchecked share is not the whole gate.
        gate.Learn(2000, new SenderVerdict(10, "powa", Allowed: true));
        Assert.True(gate.TryAdmit(2000, out _));
        Assert.Equal(100 * 20 - gate.MaxPerUncheckedSender * 20 + 1000 - storm + 1, gate.Dropped);
    }

    [Fact]
    public void A_refused_backend_is_dropped_at_the_gate_until_its_verdict_is_old()
    {
        var gate = new NotifyGate(_time);
        gate.Learn(1000, new SenderVerdict(16400, "stranger", Allowed: false));
        Assert.Equal(0, Admit(gate, 1000, 10));
        Assert.Equal(10, gate.Dropped);

        // The pid may belong to another backend by now: unchecked again.
        _time.Advance(gate.VerdictFor);
        Assert.Null(gate.Known(1000));
        Assert.Equal(gate.MaxPerUncheckedSender, Admit(gate, 1000, 10));
    }

    [Fact]
    public void Released_slots_go_back_to_the_bucket_they_were_taken_from()
    {
        var gate = new NotifyGate(_time) { MaxUnchecked = 5 };
        var tickets = new List<GateTicket>();
        Assert.Equal(5, Admit(gate, 1000, 5, tickets));
        Assert.False(gate.TryAdmit(1001, out _));

        // Checked while its notifications waited: their release still frees the unchecked share.
        gate.Learn(1000, new SenderVerdict(10, "powa", Allowed: true));
        foreach (var t in tickets) gate.Release(t);
        Assert.True(gate.TryAdmit(1001, out _));
        Assert.Equal(gate.MaxPerRole, Admit(gate, 1000, 100));
    }

    [Fact]
    public void A_refused_role_is_answered_once_an_hour()
    {
        var gate = new NotifyGate(_time);
        Assert.True(gate.FirstRefusal(16400));
        Assert.False(gate.FirstRefusal(16400));
        Assert.True(gate.FirstRefusal(16401));
        _time.Advance(gate.RefusalQuiet - TimeSpan.FromSeconds(1));
        Assert.False(gate.FirstRefusal(16400));
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.True(gate.FirstRefusal(16400));
    }
}
