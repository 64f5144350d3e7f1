namespace PowaCluster.Collector.Actors;

/// <summary>A NOTIFY on powa_collector, with the sender's backend pid (for the permission check).</summary>
public sealed record ControlNotification(int SenderPid, string Payload);

/// <summary>The listener is (again) listening; the parent may want to know for its status.</summary>
public sealed record ListenerState(bool Listening, string? Error);
