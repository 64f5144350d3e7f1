namespace PowaCluster.Collector.Configuration;

/// <summary>Text from outside (a NOTIFY payload, a powa_servers value) for a log line.</summary>
public static class LogText
{
    /// <summary>On one line (control characters become '?'), at most max characters ("..." at the end when cut).</summary>
    public static string OneLine(string s, int max)
    {
        var one = new string(s.Select(c => char.IsControl(c) ? '?' : c).ToArray());
        return one.Length <= max ? one : one[..(max - 3)] + "...";
    }
}
