using System.Buffers.Binary;
using System.Text;
using PowaCluster.Collector.Staging;
using Xunit;

namespace PowaCluster.Tests.Unit;

/// <summary>
/// The repository receives only rows of the server being stored: CopyRowCheck walks binary and text COPY data
/// (as the remotes produce it and the spool keeps it) and refuses a row of another srvid, wherever the data is
/// cut into writes.
/// </summary>
public sealed class CopyRowCheckTests
{
    /// <summary>Binary COPY data: the header (with an extension area), rows of (srvid, a text, a NULL), the trailer.</summary>
    static byte[] Binary(params int?[] srvids)
    {
        var b = new List<byte>("PGCOPY\n"u8.ToArray()) { 0xff, (byte)'\r', (byte)'\n', 0 };
        b.AddRange(Be32(0));
        b.AddRange(Be32(3)); // an extension area of 3 bytes: skipped
        b.AddRange([1, 2, 3]);
        foreach (var id in srvids)
        {
            b.AddRange(Be16(3));
            if (id is { } v) { b.AddRange(Be32(4)); b.AddRange(Be32(v)); }
            else b.AddRange(Be32(-1));
            var text = Encoding.UTF8.GetBytes($"SELECT {id} -- a query text");
            b.AddRange(Be32(text.Length));
            b.AddRange(text);
            b.AddRange(Be32(-1));
        }
        b.AddRange(Be16(-1));
        return [.. b];
    }

    static byte[] Be32(int v) { var x = new byte[4]; BinaryPrimitives.WriteInt32BigEndian(x, v); return x; }
    static byte[] Be16(short v) { var x = new byte[2]; BinaryPrimitives.WriteInt16BigEndian(x, v); return x; }

    /// <summary>Feeds the data in pieces of <paramref name="piece"/> bytes, then completes.</summary>
    static long Check(byte[] data, int srvid, bool text, int piece)
    {
        var check = new CopyRowCheck(srvid, text, "pg_stat_statements");
        for (var i = 0; i < data.Length; i += piece) check.Feed(data.AsSpan(i, Math.Min(piece, data.Length - i)));
        check.Complete();
        return check.Rows;
    }

    [Fact]
    public void Rows_of_the_server_pass_however_the_data_is_cut()
    {
        var data = Binary(7, 7, 7);
        foreach (var piece in new[] { 1, 2, 3, 5, 19, 64, data.Length })
            Assert.Equal(3, Check(data, 7, text: false, piece));
        Assert.Equal(0, Check(Binary(), 7, text: false, 1));
    }

    [Fact]
    public void Many_rows_in_large_writes_are_counted_and_a_foreign_one_among_them_refused()
    {
        var ids = Enumerable.Repeat<int?>(7, 1000).ToArray();
        foreach (var piece in new[] { 777, 4096, 65536 })
            Assert.Equal(1000, Check(Binary(ids), 7, text: false, piece));
        ids[600] = 8;
        foreach (var piece in new[] { 777, 65536 })
            Assert.Contains("is for srvid 8", Assert.Throws<StageRejectedException>(() => Check(Binary(ids), 7, text: false, piece)).Message);
    }

    [Fact]
    public void A_row_of_another_server_or_without_srvid_is_refused_wherever_it_is()
    {
        foreach (var piece in new[] { 1, 4, 1000 })
        {
            var e = Assert.Throws<StageRejectedException>(() => Check(Binary(7, 7, 2, 7), 7, text: false, piece));
            Assert.Contains("is for srvid 2, not for server 7", e.Message);
            Assert.Contains("NULL", Assert.Throws<StageRejectedException>(() => Check(Binary(7, null), 7, text: false, piece)).Message);
        }
    }

    [Fact]
    public void Data_that_is_not_binary_COPY_or_is_cut_short_is_refused()
    {
        var data = Binary(7, 7);
        Assert.Contains("signature", Assert.Throws<StageRejectedException>(() => Check("not COPY data at all, longer than a header"u8.ToArray(), 7, false, 8)).Message);
        Assert.Contains("cut in the middle", Assert.Throws<StageRejectedException>(() => Check(data[..(data.Length - 7)], 7, false, 8)).Message);
        Assert.Contains("after its end", Assert.Throws<StageRejectedException>(() => Check([.. data, 0, 1], 7, false, 8)).Message);
    }

    [Fact]
    public void Text_COPY_rows_are_checked_by_their_first_field()
    {
        var good = "7\tpg_class\t{1,2}\n7\tline with an escaped \\n newline\t\\N\n"u8.ToArray();
        foreach (var piece in new[] { 1, 2, 5, good.Length })
            Assert.Equal(2, Check(good, 7, text: true, piece));
        Assert.Contains("srvid 71", Assert.Throws<StageRejectedException>(() => Check("7\ta\n71\tb\n"u8.ToArray(), 7, true, 3)).Message);
        Assert.Contains("srvid 17", Assert.Throws<StageRejectedException>(() => Check("17\tb\n"u8.ToArray(), 7, true, 1)).Message);
        Assert.Contains("cut in the middle", Assert.Throws<StageRejectedException>(() => Check("7\ta\n7"u8.ToArray(), 7, true, 1)).Message);
    }
}
