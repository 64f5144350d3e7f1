using PowaCluster.Collector.Control;

namespace PowaCluster.Collector.Actors;

/// <summary>The active servers, after each read of powa_servers: what the ControlDesk answers about.</summary>
public sealed record ServersKnown(IReadOnlyList<int> SrvIds);

/// <summary>powa-web asked for RELOAD: the coordinator reads powa_servers again and says when it is done (ReloadDone).</summary>
public sealed record ReloadRequested(ControlRequest Request);

/// <summary>The reads asked for by these RELOADs are done (Error: why the last one failed).</summary>
public sealed record ReloadDone(IReadOnlyList<ControlRequest> Requests, string? Error);
