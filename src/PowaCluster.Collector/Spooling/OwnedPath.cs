using System.Runtime.InteropServices;

namespace PowaCluster.Collector.Spooling;

/// <summary>
/// Makes a path of the spool this process's own before it is trusted: not a symbolic link (a link would take
/// the owner and mode change elsewhere), owned by the effective user (lchown to it: a no-op for its own, a
/// takeover for root, refused for anyone else), and the given mode. Another user who owned it could write it
/// still, whatever its mode; after this, only this user can.
/// </summary>
internal static class OwnedPath
{
    public static void Claim(string path, UnixFileMode mode)
    {
        if (OperatingSystem.IsWindows()) return;
        if (new FileInfo(path).LinkTarget is not null)
            throw new UnauthorizedAccessException($"{path} is a symbolic link");
        if (lchown(path, geteuid(), uint.MaxValue) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new UnauthorizedAccessException(errno == 1 // EPERM
                ? $"{path} belongs to another user" : $"cannot make {path} this user's own (errno {errno})");
        }
        File.SetUnixFileMode(path, mode);
    }

    [DllImport("libc", SetLastError = true)]
    static extern uint geteuid();

    // A path is marshalled as UTF-8 on Unix; group -1 leaves it as it is.
    [DllImport("libc", SetLastError = true)]
    static extern int lchown(string path, uint owner, uint group);
}
