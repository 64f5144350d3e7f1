using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.IO.Compression;
using System.Text.Json;
using PowaCluster.Collector.Staging;

namespace PowaCluster.Collector.Spooling;

/// <summary>What a spooled snapshot's header says: enough to store it later exactly as it would have been stored then.</summary>
/// <param name="RemotePowa">the remote's powa when read (absent from the files of earlier builds: null)</param>
public sealed record SpoolHeader(int SrvId, string ServerName, DateTime TakenAtUtc, bool Forced, int ServerVersionNum,
    long Sequence, long DataLength, IReadOnlyList<StagedDatasource> Datasources, IReadOnlyList<string> Errors, string? RemotePowa = null);

/// <summary>
/// One spooled snapshot is one file: <c>POWASPL2</c>, the length of the compressed data (8 bytes), the
/// header's length (4 bytes; little-endian both), the header (UTF-8 JSON: srvid, when taken, forced,
/// server_version_num, the datasources' offsets, the errors), the stage's bytes as read off the remote (binary
/// COPY data, back to back) deflated (zlib, fastest: 5.5 times smaller on the lab's snapshots, so the spool's
/// bound holds a 5.5 times longer outage), then zero or more error records (<c>ERRS</c>, a length, a JSON
/// array: errors of the remote cleanup that ran after the file was written). Written under a <c>.part</c>
/// name, fsynced, renamed, and the directory fsynced: a file with the final name is complete; a <c>.part</c>
/// file is a write that a crash cut short, deleted at start. A torn error record at the end is ignored.
/// </summary>
public static class SpoolFile
{
    static readonly byte[] Magic = "POWASPL2"u8.ToArray();
    static readonly byte[] ErrorsMark = "ERRS"u8.ToArray();
    public const string Extension = ".snap";
    public const string PartExtension = ".part";

    /// <summary>Writes the stage to <paramref name="path"/> durably; on failure nothing is left and a SpoolException says why.</summary>
    public static async Task<long> WriteAsync(string path, SnapshotStage stage, long sequence, CancellationToken ct)
    {
        var part = path + PartExtension;
        var header = new SpoolHeader(stage.SrvId, stage.ServerName, stage.TakenAtUtc, stage.Forced, stage.ServerVersionNum, sequence,
            stage.Length, stage.Datasources.ToList(), stage.Errors.ToList(), stage.RemotePowa);
        var json = JsonSerializer.SerializeToUtf8Bytes(header);
        try
        {
            var fs = new FileStream(part, new FileStreamOptions
            {
                Mode = FileMode.CreateNew,
                Access = FileAccess.Write,
                Share = FileShare.None,
                BufferSize = 64 * 1024,
                Options = FileOptions.Asynchronous,
                UnixCreateMode = OwnerOnly,
            });
            await using (fs.ConfigureAwait(false))
            {
                await fs.WriteAsync(Magic, ct).ConfigureAwait(false);
                await fs.WriteAsync(new byte[8], ct).ConfigureAwait(false); // the compressed length, written below
                await fs.WriteAsync(Int32(json.Length), ct).ConfigureAwait(false);
                await fs.WriteAsync(json, ct).ConfigureAwait(false);
                var dataStart = fs.Position;
                var z = new ZLibStream(fs, CompressionLevel.Fastest, leaveOpen: true);
                await using (z.ConfigureAwait(false))
                    await stage.CopyAllToAsync(z, ct).ConfigureAwait(false);
                var compressed = fs.Position - dataStart;
                fs.Position = Magic.Length;
                await fs.WriteAsync(Int64(compressed), ct).ConfigureAwait(false);
                await fs.FlushAsync(ct).ConfigureAwait(false);
                fs.Flush(flushToDisk: true); // fsync: on the disk before the remote's cleanup runs
            }
            File.Move(part, path);
            SyncDirectory(Path.GetDirectoryName(path)!);
            return new FileInfo(path).Length;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            try { File.Delete(part); } catch (Exception) { /* the failure is reported below */ }
            throw new SpoolException($"cannot write the spool in {Path.GetDirectoryName(path)}: {e.Message}");
        }
        catch (OperationCanceledException)
        {
            // Abandoned (its server stopped): no .part is left outside the spool's bounds until the next start.
            try { File.Delete(part); } catch (Exception) { /* deleted at the next start */ }
            throw;
        }
    }

    /// <summary>Errors met after the file was written (the remote's cleanup): appended, fsynced.</summary>
    public static void AppendErrors(string path, IReadOnlyList<string> errors)
    {
        if (errors.Count == 0) return;
        var json = JsonSerializer.SerializeToUtf8Bytes(errors);
        try
        {
            // Open, not Append: a file a replay deleted meanwhile is not created again as a junk file.
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.None);
            fs.Seek(0, SeekOrigin.End);
            fs.Write(ErrorsMark);
            fs.Write(Int32(json.Length));
            fs.Write(json);
            fs.Flush(flushToDisk: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SpoolException($"cannot append to the spooled snapshot {path}: {e.Message}");
        }
    }

    /// <summary>rw for the owner only: a spooled snapshot holds the remote's query texts.</summary>
    internal const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <summary>The most data a spooled snapshot may say it holds: inflating stops there (a small file cannot fill the disk).</summary>
    public const long MaxDataLength = 2L << 30;

    /// <summary>
    /// Reads a spooled snapshot back as a stage (in the node's stage memory, or its stage files beyond it, as a
    /// snapshot just read). Nothing in the file is trusted: a file that is not one this collector wrote for
    /// server <paramref name="srvId"/> (a header that does not hold, another srvid, data that does not match
    /// it, a file others may write) is a StageRejectedException naming the file; a SpoolException when the
    /// file cannot be read now (a local fault: it is tried again later).
    /// </summary>
    public static async Task<SnapshotStage> OpenAsync(string path, int srvId, StageBudget budget, CancellationToken ct)
    {
        SnapshotStage? stage = null;
        try
        {
            if (!OperatingSystem.IsWindows() && (File.GetUnixFileMode(path) & (UnixFileMode.GroupWrite | UnixFileMode.OtherWrite)) != 0)
                throw new InvalidDataException("other users may write it (its mode allows group or other writes)");
            try { OwnedPath.Claim(path, OwnerOnly); }
            catch (UnauthorizedAccessException e) { throw new InvalidDataException(e.Message); }
            var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 64 * 1024, FileOptions.Asynchronous);
            await using var fsScope = fs.ConfigureAwait(false);
            var head = ReadExactly(fs, Magic.Length + 12);
            if (!head.AsSpan(0, Magic.Length).SequenceEqual(Magic)) throw new InvalidDataException("not a spooled snapshot (bad magic)");
            var compressed = BinaryPrimitives.ReadInt64LittleEndian(head.AsSpan(Magic.Length));
            var headerLength = BinaryPrimitives.ReadInt32LittleEndian(head.AsSpan(Magic.Length + 8));
            if (headerLength <= 0 || headerLength > 16 * 1024 * 1024) throw new InvalidDataException($"bad header length {headerLength}");
            var header = JsonSerializer.Deserialize<SpoolHeader>(ReadExactly(fs, headerLength))
                         ?? throw new InvalidDataException("empty header");
            Validate(header, srvId);
            var dataOffset = fs.Position;
            if (compressed <= 0 || dataOffset + compressed > fs.Length) throw new InvalidDataException("shorter than its header says");
            var errors = header.Errors.Concat(ReadErrorRecords(fs, dataOffset + compressed)).ToList();
            fs.Position = dataOffset;
            stage = SnapshotStage.ForReplay(header, errors, budget);
            // One byte more than the header says at most: enough to see that it lies.
            var z = new ZLibStream(new BoundedStream(fs, compressed), CompressionMode.Decompress);
            await using (z.ConfigureAwait(false))
                await stage.AppendAsync(new BoundedStream(z, header.DataLength + 1), ct).ConfigureAwait(false);
            if (stage.Length != header.DataLength)
                throw new InvalidDataException($"{(stage.Length > header.DataLength ? "more" : stage.Length + " bytes of")} data where its header says {header.DataLength} bytes");
            return stage;
        }
        catch (Exception e) when (e is InvalidDataException or JsonException or EndOfStreamException or NotSupportedException)
        {
            stage?.Dispose();
            throw new StageRejectedException($"the spooled snapshot {path} is not one this collector wrote: {e.Message}");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            stage?.Dispose();
            throw new SpoolException($"the spooled snapshot {path} cannot be read: {e.Message}");
        }
    }

    /// <summary>What a header must hold before anything of it is used; an InvalidDataException says what does not.</summary>
    static void Validate(SpoolHeader h, int srvId)
    {
        if (h.SrvId != srvId) throw new InvalidDataException($"its header says server {h.SrvId}, but it is in server {srvId}'s spool");
        if (h.ServerName is null || h.Datasources is null || h.Errors is null) throw new InvalidDataException("its header lacks a field");
        if (h.DataLength < 0 || h.DataLength > MaxDataLength)
            throw new InvalidDataException($"its header says {h.DataLength} bytes of data (at most {MaxDataLength})");
        long end = 0;
        foreach (var ds in h.Datasources)
        {
            if (ds is null || ds.Name is null || ds.Target is null || ds.Name.Length > 256 || ds.Target.Length > 256)
                throw new InvalidDataException("a datasource of its header lacks a name or a target, or they are too long");
            if (ds.Offset < end || ds.Length < 0 || ds.Offset + ds.Length > h.DataLength)
                throw new InvalidDataException($"datasource {ds.Name}'s bytes are outside the data or overlap another's");
            end = ds.Offset + ds.Length;
        }
        if (h.Errors.Count > 10_000 || h.Errors.Any(e => e is null || e.Length > 64 * 1024))
            throw new InvalidDataException("its errors are too many or too long");
    }

    static IEnumerable<string> ReadErrorRecords(FileStream fs, long from)
    {
        var found = new List<string>();
        fs.Position = from;
        while (fs.Length - fs.Position >= 8)
        {
            var mark = ReadExactly(fs, 8);
            if (!mark.AsSpan(0, 4).SequenceEqual(ErrorsMark)) break;
            var n = BinaryPrimitives.ReadInt32LittleEndian(mark.AsSpan(4));
            if (n <= 0 || fs.Length - fs.Position < n) break; // torn at a crash: what was not fsynced is not there
            try { found.AddRange(JsonSerializer.Deserialize<string[]>(ReadExactly(fs, n)) ?? []); }
            catch (JsonException) { break; }
        }
        return found;
    }

    static byte[] ReadExactly(Stream s, int n)
    {
        var b = new byte[n];
        s.ReadExactly(b);
        return b;
    }

    static byte[] Int64(long v)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(b, v);
        return b;
    }

    static byte[] Int32(int v)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(b, v);
        return b;
    }

    /// <summary>fsync of a directory: a rename or an unlink in it is on the disk (POSIX; nothing elsewhere).</summary>
    public static void SyncDirectory(string directory)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return;
        var fd = open(directory, 0 /* O_RDONLY */);
        if (fd < 0) return;
        try { fsync(fd); }
        finally { close(fd); }
    }

    [DllImport("libc", SetLastError = true)]
    static extern int open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

    [DllImport("libc", SetLastError = true)]
    static extern int fsync(int fd);

    [DllImport("libc")]
    static extern int close(int fd);
}

/// <summary>A read-only view of the next <c>length</c> bytes of a stream (the compressed data, not the error records after it).</summary>
sealed class BoundedStream(Stream inner, long length) : Stream
{
    long _left = length;

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        var n = inner.Read(buffer[..(int)Math.Min(buffer.Length, _left)]);
        _left -= n;
        return n;
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default)
    {
        var n = await inner.ReadAsync(buffer[..(int)Math.Min(buffer.Length, _left)], ct).ConfigureAwait(false);
        _left -= n;
        return n;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken ct) =>
        ReadAsync(buffer.AsMemory(offset, count), ct).AsTask();

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

/// <summary>The spool cannot be written or read; the message says where and why.</summary>
public sealed class SpoolException(string message) : IOException(message);
