namespace PowaCluster.Collector.Actors;

/// <summary>A NOTIFY on powa_collector the gate admitted: its ticket (the sender's backend pid) and payload.</summary>
public sealed record ControlNotification(Control.GateTicket Ticket, string Payload)
{
    public int SenderPid => Ticket.SenderPid;
}

/// <summary>The listener is (again) listening; the parent may want to know for its status.</summary>
public sealed record ListenerState(bool Listening, string? Error);
