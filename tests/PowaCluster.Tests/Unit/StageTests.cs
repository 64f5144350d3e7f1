using PowaCluster.Collector.Staging;
using Xunit;

namespace PowaCluster.Tests.Unit;

public sealed class StageTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), $"powa-cluster-stage-unit-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    static byte[] Bytes(int n, int seed)
    {
        var b = new byte[n];
        new Random(seed).NextBytes(b);
        return b;
    }

    static async Task<byte[]> ReadBack(SnapshotStage stage, StagedDatasource ds)
    {
        using var ms = new MemoryStream();
        await stage.CopyToAsync(ds, ms, CancellationToken.None);
        return ms.ToArray();
    }

    /// <summary>The same bytes come back whether the stage is all memory, all file, or memory then file.</summary>
    [Theory]
    [InlineData(0)]
    [InlineData(SnapshotStage.SegmentSize)]
    [InlineData(4L * SnapshotStage.SegmentSize)]
    [InlineData(64L * 1024 * 1024)]
    public async Task Bytes_come_back_as_they_were_written_whatever_the_budget(long budgetBytes)
    {
        var budget = new StageBudget(budgetBytes, _dir);
        var a = Bytes(150_000, 1);    // crosses segments
        var b = Bytes(21, 2);         // an empty binary COPY: header and trailer
        var c = Bytes(300_000, 3);
        using (var stage = new SnapshotStage(7, "h:1", budget))
        {
            foreach (var (name, data) in new[] { ("a", a), ("b", b), ("c", c) })
            {
                var offset = stage.Length;
                Assert.Equal(data.Length, await stage.AppendAsync(new MemoryStream(data), CancellationToken.None));
                stage.AddDatasource(name, name + "_tmp", offset);
            }
            stage.Seal();
            Assert.Equal(a, await ReadBack(stage, stage.Datasources[0]));
            Assert.Equal(b, await ReadBack(stage, stage.Datasources[1]));
            Assert.Equal(c, await ReadBack(stage, stage.Datasources[2]));
            Assert.False(stage.Datasources[1].HasRows);
            Assert.Equal(budgetBytes < a.Length + b.Length + c.Length, stage.Spilled);
            Assert.True(budget.UsedBytes <= budgetBytes);
            Assert.Equal(stage.Spilled, budget.FileBytes > 0);
            Assert.True(budget.FileBytes <= stage.Length);
            // The file is unlinked at once: nothing to clean up, even after a kill -9.
            Assert.Empty(Directory.Exists(_dir) ? Directory.EnumerateFiles(_dir) : []);
        }
        Assert.Equal(0, budget.UsedBytes);
        Assert.Equal(0, budget.FileBytes);
        Assert.Equal(budgetBytes < 471_021 ? 1 : 0, budget.Stats().SpilledStages);
    }

    /// <summary>A datasource that fails midway is cut off; the next one follows the last good byte.</summary>
    [Theory]
    [InlineData(0)]
    [InlineData(2L * SnapshotStage.SegmentSize)]
    [InlineData(64L * 1024 * 1024)]
    public async Task Truncate_drops_a_failed_datasource(long budgetBytes)
    {
        var budget = new StageBudget(budgetBytes, _dir);
        var good = Bytes(100_000, 4);
        var next = Bytes(70_000, 5);
        using var stage = new SnapshotStage(7, "h:1", budget);
        await stage.AppendAsync(new MemoryStream(good), CancellationToken.None);
        stage.AddDatasource("good", "good_tmp", 0);
        var offset = stage.Length;
        await stage.AppendAsync(new MemoryStream(Bytes(90_000, 6)), CancellationToken.None);
        stage.Truncate(offset);
        await stage.AppendAsync(new MemoryStream(next), CancellationToken.None);
        stage.AddDatasource("next", "next_tmp", offset);
        Assert.Equal(good, await ReadBack(stage, stage.Datasources[0]));
        Assert.Equal(next, await ReadBack(stage, stage.Datasources[1]));
        // The budget counts the file bytes that are left, and none once the stage is gone.
        if (budgetBytes == 0) Assert.Equal(stage.Length, budget.FileBytes);
        else if (budgetBytes >= stage.Length) Assert.Equal(0, budget.FileBytes);
        else Assert.InRange(budget.FileBytes, 1, stage.Length - 1);
        stage.Dispose();
        Assert.Equal(0, budget.FileBytes);
    }

    [Fact]
    public async Task A_spill_directory_that_cannot_be_written_is_a_clear_error()
    {
        var file = Path.Combine(Path.GetTempPath(), $"powa-cluster-not-a-dir-{Guid.NewGuid():N}");
        await File.WriteAllTextAsync(file, "x");
        try
        {
            var budget = new StageBudget(0, Path.Combine(file, "stages"));
            using var stage = new SnapshotStage(7, "h:1", budget);
            var e = await Assert.ThrowsAsync<StageException>(() => stage.AppendAsync(new MemoryStream(Bytes(10, 1)), CancellationToken.None));
            Assert.Contains("cannot be written to", e.Message);
            Assert.Contains(file, e.Message);
            Assert.Equal(1, budget.Stats().SpillFailures);
        }
        finally { File.Delete(file); }
    }

    [Fact]
    public async Task Without_a_directory_a_spill_goes_to_a_fresh_private_directory_of_the_process()
    {
        var budget = new StageBudget(0, null);
        Assert.StartsWith("a private directory under", budget.Directory);
        var data = Bytes(100_000, 7);
        using var stage = new SnapshotStage(7, "h:1", budget);
        await stage.AppendAsync(new MemoryStream(data), CancellationToken.None);
        stage.AddDatasource("d", "d_tmp", 0);
        stage.Seal();
        Assert.True(stage.Spilled);
        Assert.Equal(data, await ReadBack(stage, stage.Datasources[0]));
        // A random name (nobody can have prepared it), private to the user; removed at exit, empty meanwhile.
        Assert.StartsWith(Path.Combine(Path.GetTempPath(), "powa-cluster-stage-"), budget.Directory);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(budget.Directory));
        Assert.Empty(Directory.EnumerateFileSystemEntries(budget.Directory));
    }

    [Fact]
    public async Task A_snapshot_beyond_MaxSnapshotBytes_is_refused_having_written_at_most_that_much()
    {
        var dir = Directory.CreateTempSubdirectory("powa-cluster-stage-cap-").FullName;
        try
        {
            // Memory for 2 segments, files beyond; a snapshot may hold 300,000 bytes.
            var budget = new StageBudget(2 * SnapshotStage.SegmentSize, dir, maxStageBytes: 300_000);
            using var stage = new SnapshotStage(1, "huge", budget);
            var e = await Assert.ThrowsAsync<StageException>(() => stage.AppendAsync(new MemoryStream(new byte[10_000_000]), CancellationToken.None));
            Assert.Contains("larger than MaxSnapshotBytes (300000 bytes)", e.Message);
            Assert.True(stage.Length <= 300_000 + SnapshotStage.SegmentSize, $"{stage.Length} bytes staged");
            Assert.Throws<ArgumentException>(() => new Collector.Configuration.CollectorSettings { MaxSnapshotBytes = 1000 }.Validate());
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
