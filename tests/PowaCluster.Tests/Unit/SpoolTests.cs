using Microsoft.Extensions.Time.Testing;
using PowaCluster.Collector.Postgres;
using PowaCluster.Collector.Spooling;
using PowaCluster.Collector.Staging;
using Xunit;

namespace PowaCluster.Tests.Unit;

/// <summary>
/// The spool's files and bounds, on a temporary directory (the outage itself is in Integration.SpoolTests). The
/// spool's clock is a fake one: snapshots are dated from it, and the age bound is measured with it.
/// </summary>
public sealed class SpoolFileTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("powa-cluster-spool-unit-").FullName;
    readonly StageBudget _budget = new(1 << 20, null);
    readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 30, 10, 30, 0, TimeSpan.Zero));
    DateTime Now => _time.GetUtcNow().UtcDateTime;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    SnapshotSpool Open(long maxBytes = 1 << 30, TimeSpan? maxAge = null) =>
        SnapshotSpool.Open(_root, null, "127.0.0.1:5432/powa", maxBytes, maxAge ?? TimeSpan.FromHours(24), _budget, _time);

    async Task<SnapshotStage> StageAsync(int srvid, DateTime taken, int size, int seed)
    {
        var stage = new SnapshotStage(srvid, $"127.0.0.{srvid}:5432", _budget) { TakenAtUtc = taken, ServerVersionNum = 150020, Forced = seed % 2 == 0 };
        var bytes = new byte[size];
        new Random(seed).NextBytes(bytes);
        await stage.AppendAsync(new MemoryStream(bytes[..(size / 3)]), CancellationToken.None);
        stage.AddDatasource("pg_stat_statements", "public.powa_statements_src_tmp", 0);
        var second = stage.Length;
        await stage.AppendAsync(new MemoryStream(bytes[(size / 3)..]), CancellationToken.None);
        stage.AddDatasource("pg_qualstats", "public.powa_qualstats_src_tmp", second, text: true);
        stage.Errors.Add("Extension pg_wait_sampling is not installed on the remote server");
        return stage;
    }

    static async Task<byte[]> AllBytes(SnapshotStage s)
    {
        using var ms = new MemoryStream();
        foreach (var ds in s.Datasources) await s.CopyToAsync(ds, ms, CancellationToken.None);
        return ms.ToArray();
    }

    [Fact]
    public async Task A_spooled_snapshot_comes_back_as_it_was_read_with_its_header_and_later_errors()
    {
        using var spool = Open();
        var taken = Now.AddMinutes(-30);
        using var stage = await StageAsync(7, taken, 200_000, 4);
        var (entry, dropped) = await spool.For(7).WriteAsync(stage, 42, CancellationToken.None);
        Assert.Empty(dropped);
        SpoolFile.AppendErrors(entry.Path, ["Error while calling pg_qualstats_reset(): permission denied"]);

        using var back = await spool.For(7).OpenAsync(entry, CancellationToken.None);
        Assert.True(back.FromSpool);
        Assert.Equal((7, taken, 150020), (back.SrvId, back.TakenAtUtc, back.ServerVersionNum));
        Assert.False(back.Forced); // a file does not loosen the fence
        Assert.Equal(stage.Datasources, back.Datasources);
        Assert.Equal(await AllBytes(stage), await AllBytes(back));
        Assert.Equal(["Extension pg_wait_sampling is not installed on the remote server",
            "Error while calling pg_qualstats_reset(): permission denied"], back.Errors);
        // Older than (or as old as) the last snapshot stored: never stored back in time, spooled or live (a
        // hand-off's queue stored after the new owner's newer snapshot).
        Assert.NotNull(SnapshotStore.TooClose(back, taken.AddSeconds(60), 300));
        Assert.NotNull(SnapshotStore.TooClose(back, taken, 5));
        Assert.Null(SnapshotStore.TooClose(back, taken.AddSeconds(-20), 5));
        Assert.Contains("back in time", SnapshotStore.TooClose(stage, taken.AddSeconds(60), 5));
    }

    [Fact]
    public async Task A_restart_finds_what_was_spooled_in_order_and_drops_what_a_crash_cut_short()
    {
        var t0 = Now.AddMinutes(-30);
        string torn;
        using (var spool = Open())
        {
            foreach (var i in new[] { 2, 0, 1 })
            {
                using var st = await StageAsync(3, t0.AddSeconds(5 * i), 10_000, i);
                await spool.For(3).WriteAsync(st, i, CancellationToken.None);
            }
            // A write cut short by a crash, and an error record torn at its end.
            torn = Path.Combine(Path.GetDirectoryName(spool.For(3).TakeOldest()!.Path)!, "0639000000000000000-9-x.snap.part");
            await File.WriteAllBytesAsync(torn, [1, 2, 3]);
            var newest = spool.For(3).Count;
            Assert.Equal(3, newest);
        }
        using var again = Open();
        var server = again.For(3);
        Assert.Equal(3, server.Count);
        Assert.False(File.Exists(torn));
        var order = new List<DateTime>();
        while (server.TakeOldest() is { } e)
        {
            using (var s = await server.OpenAsync(e, CancellationToken.None)) order.Add(s.TakenAtUtc);
            server.Remove(e, replayed: true);
        }
        Assert.Equal([t0, t0.AddSeconds(5), t0.AddSeconds(10)], order);
        Assert.Equal(3, again.Stats().Replayed);
        Assert.Empty(Directory.GetFiles(again.Directory, "*.snap", SearchOption.AllDirectories));
    }

    [Fact]
    public async Task Beyond_its_size_the_spool_drops_the_oldest_of_the_node_never_the_one_in_flight()
    {
        using var spool = Open(maxBytes: 35_000);
        var t0 = Now.AddMinutes(-10);
        using (var a = await StageAsync(1, t0, 10_000, 1)) await spool.For(1).WriteAsync(a, 1, CancellationToken.None);
        var inFlight = spool.For(1).TakeOldest()!;  // being replayed: not dropped
        using (var b = await StageAsync(2, t0.AddSeconds(5), 10_000, 2)) await spool.For(2).WriteAsync(b, 1, CancellationToken.None);
        using (var c = await StageAsync(1, t0.AddSeconds(10), 10_000, 3)) await spool.For(1).WriteAsync(c, 2, CancellationToken.None);
        using var d = await StageAsync(2, t0.AddSeconds(15), 10_000, 4);
        var (_, dropped) = await spool.For(2).WriteAsync(d, 2, CancellationToken.None);
        Assert.Equal([t0.AddSeconds(5)], dropped.Select(e => e.TakenAtUtc));
        Assert.Equal(1, spool.Stats().Dropped);
        Assert.Equal(1, spool.For(2).Dropped);
        Assert.True(File.Exists(inFlight.Path));
        Assert.False(File.Exists(dropped[0].Path));
        var warnings = new List<string>();
        spool.Warn = warnings.Add;
        using var e2 = await StageAsync(2, t0.AddSeconds(20), 10_000, 5);
        await spool.For(2).WriteAsync(e2, 3, CancellationToken.None);
        // Server 1 loses its first one now: said once; server 2 was told already (its spool has not been empty since).
        Assert.Equal("Server 1", Assert.Single(warnings)[..8]);
    }

    [Fact]
    public async Task Beyond_its_age_a_spooled_snapshot_is_dropped()
    {
        using var spool = Open(maxAge: TimeSpan.FromMinutes(30));
        using (var old = await StageAsync(5, Now.AddMinutes(-20), 1_000, 1)) await spool.For(5).WriteAsync(old, 1, CancellationToken.None);
        using (var recent = await StageAsync(5, Now, 1_000, 2)) await spool.For(5).WriteAsync(recent, 2, CancellationToken.None);
        spool.Expire();
        Assert.Equal(2, spool.For(5).Count);
        // The spool's clock, not the machine's: 11 minutes later the first one is 31 minutes old.
        _time.Advance(TimeSpan.FromMinutes(11));
        spool.Expire();
        Assert.Equal(1, spool.For(5).Count);
        Assert.Equal(1, spool.Stats().Dropped);
    }

    [Fact]
    public void A_second_process_on_the_same_spool_is_refused_with_a_reason()
    {
        using var first = Open();
        Assert.True(first.Usable);
        using var second = Open();
        Assert.False(second.Usable);
        Assert.Contains("in use by another powa-cluster process", second.Problem);
        Assert.Contains(first.Directory, second.Problem);
        // Another repository has a spool of its own beside it.
        using var other = SnapshotSpool.Open(_root, null, "127.0.0.2:5432/powa", 1 << 30, TimeSpan.FromHours(1), _budget);
        Assert.True(other.Usable);
        Assert.NotEqual(first.Directory, other.Directory);
    }

    /// <summary>
    /// A spool is the repository's, not its DSN's: the same repository reached as localhost finds the backlog
    /// spooled for 127.0.0.1, another repository spelled alike (another cluster on the same address after a
    /// rebuild) does not, and an earlier build's spool, named after the DSN, is moved to the repository's name.
    /// </summary>
    [Fact]
    public async Task A_spool_is_found_by_what_the_repository_is_not_by_how_the_DSN_spells_it()
    {
        using (var earlier = SnapshotSpool.Open(_root, null, "127.0.0.1:5432/powa", 1 << 30, TimeSpan.FromHours(24), _budget, _time))
        {
            using var st = await StageAsync(3, Now, 1_000, 1);
            await earlier.For(3).WriteAsync(st, 1, CancellationToken.None);
        }
        string dir;
        using (var spool = SnapshotSpool.Open(_root, "7716069058342545381-16384", "127.0.0.1:5432/powa", 1 << 30, TimeSpan.FromHours(24), _budget, _time))
        {
            Assert.Contains("is now", spool.Moved);
            Assert.EndsWith("repo-7716069058342545381-16384", spool.Directory);
            Assert.Equal(1, spool.For(3).Count);
            dir = spool.Directory;
        }
        using (var sameElsewhere = SnapshotSpool.Open(_root, "7716069058342545381-16384", "localhost:5432/powa", 1 << 30, TimeSpan.FromHours(24), _budget, _time))
        {
            Assert.Equal(dir, sameElsewhere.Directory);
            Assert.Null(sameElsewhere.Moved);
            Assert.Equal(1, sameElsewhere.For(3).Count);
        }
        using var another = SnapshotSpool.Open(_root, "7716069058342545999-16384", "127.0.0.1:5432/powa", 1 << 30, TimeSpan.FromHours(24), _budget, _time);
        Assert.NotEqual(dir, another.Directory);
        Assert.Equal(0, another.For(3).Count);
        // An identity that is not two numbers names nothing: the DSN's text does, as before.
        using var odd = SnapshotSpool.Open(_root, "../../x", "127.0.0.3:5432/powa", 1 << 30, TimeSpan.FromHours(24), _budget, _time);
        Assert.StartsWith(Path.Combine(_root, "repo-"), odd.Directory);
        Assert.DoesNotContain("..", odd.Directory);
    }

    static void Chown(string owner, string path)
    {
        using var p = System.Diagnostics.Process.Start("chown", ["-R", owner, path]);
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"chown {owner} {path} (the suite runs as root, as initdb via runuser needs)");
    }

    static int OwnerOf(string path)
    {
        using var p = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("stat", ["-c", "%u", path]) { RedirectStandardOutput = true })!;
        var uid = int.Parse(p.StandardOutput.ReadToEnd().Trim());
        p.WaitForExit();
        return uid;
    }

    /// <summary>
    /// A server directory and a file another user owns (who could write them whatever their mode) are made the
    /// node's own before anything in them is replayed; a server directory that is a link elsewhere is not
    /// followed (its target keeps its mode) and not replayed, and the log says why.
    /// </summary>
    [Fact]
    public async Task What_another_user_owns_is_made_the_nodes_own_and_a_link_elsewhere_is_not_followed()
    {
        string dir, file;
        using (var spool = Open())
        {
            using var st = await StageAsync(4, Now, 1_000, 1);
            file = (await spool.For(4).WriteAsync(st, 1, CancellationToken.None)).Entry.Path;
            dir = spool.Directory;
        }
        var me = OwnerOf(dir);
        Chown("nobody", Path.Combine(dir, "srv4"));
        Assert.Equal(65534, OwnerOf(file));
        var elsewhere = Directory.CreateTempSubdirectory("powa-cluster-elsewhere-").FullName;
        File.SetUnixFileMode(elsewhere, (UnixFileMode)0b111_101_101);
        Directory.CreateSymbolicLink(Path.Combine(dir, "srv6"), elsewhere);
        try
        {
            using var again = Open();
            Assert.Equal(me, OwnerOf(Path.Combine(dir, "srv4")));
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(Path.Combine(dir, "srv4")));
            Assert.Equal(1, again.For(4).Count);
            var entry = again.For(4).TakeOldest()!;
            using (var back = await again.For(4).OpenAsync(entry, CancellationToken.None)) Assert.Equal(4, back.SrvId);
            Assert.Equal(me, OwnerOf(file));
            Assert.Equal((UnixFileMode)0b111_101_101, File.GetUnixFileMode(elsewhere));
            Assert.Contains(again.NotScanned, l => l.Contains("srv6") && l.Contains("symbolic link"));
        }
        finally { Directory.Delete(elsewhere); }
    }

    [Fact]
    public async Task A_spool_that_cannot_be_written_says_where_and_why()
    {
        using var spool = Open();
        Directory.CreateDirectory(spool.Directory);
        await File.WriteAllTextAsync(Path.Combine(spool.Directory, "srv9"), "a file where the server's directory goes");
        using var st = await StageAsync(9, Now, 1_000, 1);
        var e = await Assert.ThrowsAsync<SpoolException>(() => spool.For(9).WriteAsync(st, 1, CancellationToken.None));
        Assert.Contains(Path.Combine(spool.Directory, "srv9"), e.Message);
        Assert.Equal(1, spool.Stats().WriteFailures);
        Assert.Equal(0, spool.For(9).Count);
    }

    /// <summary>Rewrites the JSON header of a spooled snapshot (magic, compressed length, header length at 16, header at 20).</summary>
    static void RewriteHeader(string path, Action<System.Text.Json.Nodes.JsonObject> change)
    {
        var bytes = File.ReadAllBytes(path);
        var length = System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(16));
        var header = System.Text.Json.Nodes.JsonNode.Parse(bytes.AsSpan(20, length))!.AsObject();
        change(header);
        var json = System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(header);
        var newLength = new byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(newLength, json.Length);
        File.WriteAllBytes(path, [.. bytes[..16], .. newLength, .. json, .. bytes[(20 + length)..]]);
    }

    [Fact]
    public async Task A_spool_file_whose_header_does_not_hold_is_rejected_by_name_and_moved_aside_not_deleted()
    {
        var cases = new (string Why, Action<System.Text.Json.Nodes.JsonObject> Change, string Said)[]
        {
            ("another server's snapshot in this server's directory", h => h["SrvId"] = 2, "its header says server 2"),
            ("no errors list", h => h["Errors"] = null, "lacks a field"),
            ("a datasource beyond the data", h => h["Datasources"]![1]!["Length"] = 1_000_000, "outside the data"),
            ("a small header over data that inflates far beyond it", h => { h["DataLength"] = 100; h["Datasources"] = new System.Text.Json.Nodes.JsonArray(); },
                "more data where its header says 100 bytes"),
            ("a length beyond any snapshot", h => h["DataLength"] = SpoolFile.MaxDataLength + 1, "bytes of data (at most"),
        };
        var warnings = new List<string>();
        using var spool = Open();
        spool.Warn = warnings.Add;
        var server = spool.For(3);
        foreach (var (why, change, said) in cases)
        {
            using var st = await StageAsync(3, Now.AddSeconds(-warnings.Count - 10), 30_000, 1);
            var (entry, _) = await server.WriteAsync(st, 1, CancellationToken.None);
            RewriteHeader(entry.Path, change);
            Assert.Equal(server.TakeOldest(), entry);
            var e = await Assert.ThrowsAsync<StageRejectedException>(() => server.OpenAsync(entry, CancellationToken.None));
            Assert.True(e.Message.Contains(said) && e.Message.Contains(entry.Path), $"{why}: {e.Message}");
            server.Reject(entry, e.Message);
            Assert.False(File.Exists(entry.Path), why);
            Assert.True(File.Exists(Path.Combine(Path.GetDirectoryName(entry.Path)!, ServerSpool.RejectedDirectory, Path.GetFileName(entry.Path))), why);
            Assert.Equal(0, server.Count);
            Assert.Contains(Path.GetFileName(entry.Path), warnings[^1]);
        }
        Assert.Equal(cases.Length, warnings.Count);
    }

    [Fact]
    public async Task A_spool_file_others_may_write_is_rejected_and_files_are_written_for_the_owner_only()
    {
        using var spool = Open();
        using var st = await StageAsync(4, Now, 10_000, 1);
        var (entry, _) = await spool.For(4).WriteAsync(st, 1, CancellationToken.None);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(entry.Path));
        File.SetUnixFileMode(entry.Path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherWrite);
        var e = await Assert.ThrowsAsync<StageRejectedException>(() => spool.For(4).OpenAsync(entry, CancellationToken.None));
        Assert.Contains("other users may write it", e.Message);
        // The spool's directory, made writable by others, is the owner's only again at the next start.
        spool.Dispose();
        File.SetUnixFileMode(spool.Directory, (UnixFileMode)Convert.ToInt32("777", 8));
        using var again = Open();
        Assert.True(again.Usable, again.Problem);
        Assert.Equal((UnixFileMode)Convert.ToInt32("700", 8), File.GetUnixFileMode(again.Directory));
    }

    [Fact]
    public async Task Errors_are_never_appended_to_a_file_that_is_gone_and_an_abandoned_write_leaves_nothing()
    {
        using var spool = Open();
        using var st = await StageAsync(5, Now, 50_000, 1);
        var (entry, _) = await spool.For(5).WriteAsync(st, 1, CancellationToken.None);
        File.Delete(entry.Path); // replayed and deleted meanwhile
        Assert.Throws<SpoolException>(() => SpoolFile.AppendErrors(entry.Path, ["late cleanup error"]));
        Assert.False(File.Exists(entry.Path));
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        var path = Path.Combine(Path.GetDirectoryName(entry.Path)!, "abandoned" + SpoolFile.Extension);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => SpoolFile.WriteAsync(path, st, 2, cts.Token));
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(entry.Path)!, "*" + SpoolFile.PartExtension));
    }

    [Fact]
    public async Task A_file_that_cannot_be_read_now_is_a_local_fault_not_a_rejection()
    {
        using var spool = Open();
        using var st = await StageAsync(6, Now, 10_000, 1);
        var (entry, _) = await spool.For(6).WriteAsync(st, 1, CancellationToken.None);
        // Its path is a directory now (as unreadable as a file whose descriptor cannot be had): the writer keeps
        // the entry for the next try (SnapshotWriter: an IOException is this node's fault) and moves nothing aside.
        File.Delete(entry.Path);
        Directory.CreateDirectory(entry.Path);
        var e = await Assert.ThrowsAnyAsync<IOException>(() => spool.For(6).OpenAsync(entry, CancellationToken.None));
        Assert.IsType<SpoolException>(e);
        Assert.Contains("cannot be read", e.Message);
    }
}
