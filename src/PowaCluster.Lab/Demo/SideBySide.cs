using Npgsql;
using PowaCluster.Collector.Configuration;
using PowaCluster.Lab.Embedded;
using static PowaCluster.Lab.Demo.DemoReport;

namespace PowaCluster.Lab.Demo;

static class SideBySide
{
    /// <summary>
    /// --side-by-side: powa-cluster into database powa and the reference into powa_reference of the same
    /// repository instance, at the same time, on the same remote servers and workload; then the rows each stored
    /// per snapshot, datasource by datasource. Both read the same remote state, so what differs is the
    /// collectors (and pg_qualstats, which each snapshot resets for both: the quals are shared out between them).
    /// </summary>
    public static async Task<int> RunAsync(LabOptions cli, PowaLab lab, NpgsqlConnectionStringBuilder repoDsn,
        CollectorSettings settings, CancellationToken stop)
    {
        const string refDb = "powa_reference";
        await PowaLab.InstallPowaAsync(lab.Repository, withStatsExtensions: true, database: refDb);
        await lab.RegisterManyAsync(cli.Servers, cli.Frequency, "demo", repositoryDatabase: refDb);
        var refDsn = new NpgsqlConnectionStringBuilder(repoDsn.ConnectionString) { Database = refDb };
        await using var ours = OurCollector.Start(repoDsn, settings.WriterPoolSize, settings.Debug);
        await using var reference = await ReferenceCollector.StartForAsync(refDsn, cli.Powa, "--side-by-side");
        await using var workload = await Workload.StartAsync(lab);
        var seconds = cli.Seconds ?? 60;
        Console.WriteLine($"demo: {ours.Name} into database powa and {reference.Name} into {refDb}, side by side for {seconds} s");
        await Task.Delay(TimeSpan.FromSeconds(seconds), stop).ContinueWith(_ => { }, CancellationToken.None); // cancelled: go on
        await ours.StopAsync();
        await reference.StopAsync();
        await workload.DisposeAsync();
        var rows = new List<List<Row>>();
        foreach (var dsn in new[] { repoDsn, refDsn })
        {
            await using var monitor = new NpgsqlConnection(dsn.ConnectionString);
            await monitor.OpenAsync(CancellationToken.None); // the results are read after a stop too
            rows.Add(await PrintAsync(monitor, TimeSpan.FromSeconds(seconds), cli.Powa));
        }
        Console.WriteLine($"--- rows stored, side by side: {ours.Name} / {reference.Name} ---");
        var (a, b) = (Summarize(rows[0], cli.Powa), Summarize(rows[1], cli.Powa));
        foreach (var (label, value) in a)
        {
            var other = b[label];
            var diff = other == 0 ? (value == 0 ? "0.0 %" : "-") : $"{(value - other) / other * 100:+0.0;-0.0;0.0} %";
            Console.WriteLine($"{label,-58} {value,10:F1} {other,10:F1} {diff,9}");
        }
        Console.WriteLine($"demo summary (side by side, powa {cli.ArchivistRelease() ?? "4.1.4"}): snapshots per server {ours.Name} min {rows[0].Min(r => r.Snapshots)} " +
                          $"max {rows[0].Max(r => r.Snapshots)}, {reference.Name} min {rows[1].Min(r => r.Snapshots)} max {rows[1].Max(r => r.Snapshots)}; " +
                          $"servers with errors {rows[0].Count(r => r.Errors.Length > 0)} / {rows[1].Count(r => r.Errors.Length > 0)}");
        return 0;
    }
}
