namespace PowaCluster.Collector.Actors;

/// <summary>A NOTIFY on powa_collector the gate admitted: its ticket (the sender's backend pid) and payload.</summary>
public sealed record ControlNotification(Control.GateTicket Ticket, string Payload)
{
    public int SenderPid => Ticket.SenderPid;
}
