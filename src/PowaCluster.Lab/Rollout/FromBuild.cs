using PowaCluster.Host.Startup;

namespace PowaCluster.Lab.Rollout;

/// <summary>The build of a git ref, made once into a scratch directory (the ref's sources through git archive).</summary>
public sealed record FromBuild(string Directory, string Version)
{
    public static async Task<FromBuild> BuildAsync(string gitRef)
    {
        if (!File.Exists("PowaCluster.sln") || !System.IO.Directory.Exists(".git"))
            throw new StartupException("--from builds a git ref of this repository: run powa-lab from the clone's top directory (scripts/rollout.sh does)");
        var (ok, sha) = await LabProcess.RunAsync("git", ["rev-parse", "--verify", "--quiet", gitRef + "^{commit}"]);
        if (!ok) throw new StartupException($"--from {gitRef}: not a commit of this repository");
        sha = sha.Trim();
        var dir = Path.Combine(Path.GetTempPath(), $"powa-rollout-from-{sha[..12]}");
        var output = Path.Combine(dir, "out");
        if (!File.Exists(Path.Combine(output, "powa-cluster.dll")))
        {
            var src = Path.Combine(dir, "src");
            System.IO.Directory.CreateDirectory(src);
            Console.WriteLine($"rollout: building {gitRef} ({sha[..12]}) into {output}");
            var (archived, why) = await LabProcess.RunAsync("bash", ["-c", $"git archive --format=tar {sha} | tar -x -C '{src}'"]);
            if (!archived) throw new StartupException($"--from {gitRef}: git archive failed: {why}");
            var (built, log) = await LabProcess.RunAsync("dotnet", ["build", Path.Combine(src, "src", "PowaCluster.Host"), "-c", "Release", "-o", output,
                "--nologo", "-v", "q", "-clp:ErrorsOnly"]);
            if (!built) throw new StartupException($"--from {gitRef}: its build failed: {log}");
        }
        var (ran, version) = await LabProcess.RunAsync("dotnet", [Path.Combine(output, "powa-cluster.dll"), "version"]);
        return new FromBuild(output, ran ? version.Trim() : "its version unknown");
    }
}
