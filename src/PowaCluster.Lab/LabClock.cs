namespace PowaCluster.Lab;

/// <summary>
/// The lab measures real processes (PostgreSQL instances, collector nodes, powa-collector) in real time, and
/// makes real certificates: it reads the wall clock, on purpose, and only here.
/// </summary>
static class LabClock
{
    public static DateTime Utc => TimeProvider.System.GetUtcNow().UtcDateTime;
    public static DateTimeOffset Offset => TimeProvider.System.GetUtcNow();
}
