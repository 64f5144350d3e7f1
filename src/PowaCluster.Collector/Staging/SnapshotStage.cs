using System.Buffers;

namespace PowaCluster.Collector.Staging;

/// <summary>
/// One datasource's bytes in a stage: the binary COPY data of <c>Name</c> (text COPY data in UTF-8 when
/// <c>Text</c>), to load into <c>Target</c> (the quoted *_src_tmp table on the repository).
/// </summary>
public sealed record StagedDatasource(string Name, string Target, long Offset, long Length, bool Text = false)
{
    /// <summary>Binary COPY with no row is its 19-byte header and 2-byte trailer.</summary>
    public const int EmptyCopyLength = 21;

    public bool HasRows => Text ? Length > 0 : Length > EmptyCopyLength;
}

/// <summary>
/// A snapshot read off a remote server and not yet stored: the binary COPY output of each datasource, back to
/// back, and the errors met while reading. Bytes live in pooled 64 KiB segments while the node's
/// <see cref="StageBudget"/> allows, and beyond it in a file of the budget's directory, unlinked as soon as it
/// is opened (nothing is left behind, even by a process killed mid-snapshot). One task uses a stage at a
/// time: the reader fills it, then a writer copies it into the repository; whoever holds it last disposes it.
/// </summary>
public sealed class SnapshotStage : IDisposable
{
    public const int SegmentSize = 64 * 1024;

    readonly StageBudget _budget;
    readonly List<byte[]> _segments = [];
    readonly List<StagedDatasource> _datasources = [];
    long _memoryLength;     // bytes held in _segments: the stage's first bytes
    FileStream? _file;      // every byte after the memory part, once the budget said no
    long _fileLength;
    bool _disposed;

    public SnapshotStage(int srvId, string serverName, StageBudget budget)
    {
        SrvId = srvId;
        ServerName = serverName;
        _budget = budget;
    }

    /// <summary>
    /// A stage for a spooled snapshot read back for its replay: empty, the caller appends its bytes. Never a
    /// forced one: a file's word does not loosen the fence (a forced snapshot spooled is fenced as any other).
    /// </summary>
    internal static SnapshotStage ForReplay(Spooling.SpoolHeader header, IEnumerable<string> errors, StageBudget budget)
    {
        var stage = new SnapshotStage(header.SrvId, header.ServerName, budget)
        {
            TakenAtUtc = header.TakenAtUtc,
            ServerVersionNum = header.ServerVersionNum,
            FromSpool = true,
            RemotePowa = header.RemotePowa,
        };
        stage._datasources.AddRange(header.Datasources);
        stage.Errors.AddRange(errors);
        return stage;
    }

    public int SrvId { get; }

    /// <summary>The remote's server_version_num (PoWA 5 picks its per-database queries by it).</summary>
    public int ServerVersionNum { get; init; }
    public string ServerName { get; }

    /// <summary>
    /// The remote's powa version when the read began ("": not installed any more); null when not known (a spool
    /// file of an earlier build). The repository refuses the stage when its own powa is of another major.minor.
    /// </summary>
    public string? RemotePowa { get; set; }

    /// <summary>
    /// When the snapshot was taken, by the remote's clock (its transaction's now(), the ts of its rows; set by
    /// SnapshotReader): the fence compares snapshots of one server by one clock, whichever node read them.
    /// </summary>
    public DateTime TakenAtUtc { get; set; }

    /// <summary>FORCE_SNAPSHOT: the fence allows it 10 s after the last one (the reference's rule), not half an interval.</summary>
    public bool Forced { get; init; }

    public IReadOnlyList<StagedDatasource> Datasources => _datasources;

    /// <summary>Errors met on the remote (a missing extension, a failed cleanup); stored with the snapshot.</summary>
    public List<string> Errors { get; } = [];

    /// <summary>The read steps that failed (SnapshotReader's keys): the next snapshot guards them with a savepoint.</summary>
    public HashSet<string> FailedSteps { get; } = [];

    public long Length => _memoryLength + _fileLength;

    /// <summary>Read back from the spool (a replay), not off the remote just now.</summary>
    public bool FromSpool { get; private init; }
    public bool Spilled => _file is not null;

    /// <summary>Reads <paramref name="source"/> to its end into the stage; returns how many bytes it added.</summary>
    public async Task<long> AppendAsync(Stream source, CancellationToken ct)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var start = Length;
        while (true)
        {
            int n;
            if (_file is null && WritableSegment() is { } segment)
            {
                var used = (int)(_memoryLength % SegmentSize);
                n = await source.ReadAsync(segment.AsMemory(used), ct).ConfigureAwait(false);
                _memoryLength += n;
            }
            else
            {
                var scratch = ArrayPool<byte>.Shared.Rent(SegmentSize);
                try
                {
                    n = await source.ReadAsync(scratch.AsMemory(0, SegmentSize), ct).ConfigureAwait(false);
                    if (n > 0) await WriteToFileAsync(scratch.AsMemory(0, n), ct).ConfigureAwait(false);
                }
                finally { ArrayPool<byte>.Shared.Return(scratch); }
            }
            if (n == 0) return Length - start;
            if (Length > _budget.MaxStageBytes)
                throw new StageException($"the snapshot is larger than MaxSnapshotBytes ({_budget.MaxStageBytes} bytes): not stored; " +
                                         "the remote returns more than a snapshot may hold");
        }
    }

    /// <summary>The segment the next byte goes to (after a Truncate, maybe not the last one), else a new one if the budget allows; null: go to the file.</summary>
    byte[]? WritableSegment()
    {
        if (_memoryLength < (long)_segments.Count * SegmentSize) return _segments[(int)(_memoryLength / SegmentSize)];
        if (!_budget.TryReserve(SegmentSize)) return null;
        var s = ArrayPool<byte>.Shared.Rent(SegmentSize);
        _segments.Add(s);
        return s;
    }

    async Task WriteToFileAsync(ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        if (_file is null)
        {
            try
            {
                var path = Path.Combine(_budget.EnsureDirectory(), $"srv{SrvId}-{Guid.NewGuid():N}.stage");
                _file = new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 0);
                File.Delete(path); // the open handle keeps the data; no path is left for anyone to clean up
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                _budget.CountSpillFailure();
                throw new StageException($"the snapshot outgrew the stage memory budget ({_budget.LimitBytes} bytes) " +
                                         $"and cannot be written to {_budget.Directory}: {e.Message}");
            }
        }
        _file.Seek(_fileLength, SeekOrigin.Begin);
        try { await _file.WriteAsync(data, ct).ConfigureAwait(false); }
        catch (IOException e)
        {
            _budget.CountSpillFailure();
            throw new StageException($"cannot write the stage file in {_budget.Directory}: {e.Message}");
        }
        _fileLength += data.Length;
        _budget.AddFileBytes(data.Length);
    }

    /// <summary>The file part is now <paramref name="length"/> bytes long (the budget counts the difference).</summary>
    void SetFileLength(long length)
    {
        _budget.AddFileBytes(length - _fileLength);
        _fileLength = length;
        _file?.SetLength(length);
    }

    /// <summary>Records the bytes from <paramref name="offset"/> to the end as one datasource.</summary>
    public void AddDatasource(string name, string target, long offset, bool text = false) =>
        _datasources.Add(new StagedDatasource(name, target, offset, Length - offset, text));

    /// <summary>Drops every byte from <paramref name="length"/> on (a datasource whose export failed midway).</summary>
    public void Truncate(long length)
    {
        if (length >= Length) return;
        if (length >= _memoryLength)
        {
            SetFileLength(length - _memoryLength);
            return;
        }
        _memoryLength = length;
        SetFileLength(0);
    }

    /// <summary>Writes one datasource's bytes to <paramref name="destination"/>, as they were read.</summary>
    public async Task CopyToAsync(StagedDatasource ds, Stream destination, CancellationToken ct)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var pos = ds.Offset;
        var end = ds.Offset + ds.Length;
        while (pos < end && pos < _memoryLength)
        {
            var segment = _segments[(int)(pos / SegmentSize)];
            var inSegment = (int)(pos % SegmentSize);
            var n = (int)Math.Min(SegmentSize - inSegment, Math.Min(end, _memoryLength) - pos);
            await destination.WriteAsync(segment.AsMemory(inSegment, n), ct).ConfigureAwait(false);
            pos += n;
        }
        if (pos >= end) return;
        var scratch = ArrayPool<byte>.Shared.Rent(SegmentSize);
        try
        {
            _file!.Seek(pos - _memoryLength, SeekOrigin.Begin);
            while (pos < end)
            {
                var n = await _file.ReadAsync(scratch.AsMemory(0, (int)Math.Min(SegmentSize, end - pos)), ct).ConfigureAwait(false);
                if (n == 0) throw new StageException("the stage file is shorter than what was written to it");
                await destination.WriteAsync(scratch.AsMemory(0, n), ct).ConfigureAwait(false);
                pos += n;
            }
        }
        finally { ArrayPool<byte>.Shared.Return(scratch); }
    }

    /// <summary>Writes every byte of the stage to <paramref name="destination"/> (into a spool file).</summary>
    public Task CopyAllToAsync(Stream destination, CancellationToken ct) =>
        CopyToAsync(new StagedDatasource("", "", 0, Length), destination, ct);

    /// <summary>Called once the stage is complete: counts a stage that went to a file.</summary>
    public void Seal()
    {
        if (_file is not null) _budget.CountSpill(_fileLength);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var s in _segments) ArrayPool<byte>.Shared.Return(s);
        _budget.Release((long)_segments.Count * SegmentSize);
        _segments.Clear();
        _budget.AddFileBytes(-_fileLength);
        _fileLength = 0;
        _file?.Dispose();
        _file = null;
    }
}

/// <summary>A stage that cannot be written (its file cannot be created or written); the message says where and why.</summary>
public sealed class StageException(string message) : IOException(message);
