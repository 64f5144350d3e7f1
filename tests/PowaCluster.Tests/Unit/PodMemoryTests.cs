using System.Globalization;
using System.Text.RegularExpressions;
using k8s;
using k8s.Models;
using PowaCluster.Lab.Scale;
using Xunit;

namespace PowaCluster.Tests.Unit;

/// <summary>
/// README's memory formula, the scale lab's (PodMemory, which checks measured nodes against it) and
/// k8s/statefulset.yaml's request and limit say the same thing.
/// </summary>
public sealed class PodMemoryTests
{
    static readonly string Readme = File.ReadAllText(Path.Combine(Support.RepoRoot.Path, "README.md"));
    static readonly string StatefulSetText = File.ReadAllText(Path.Combine(Support.RepoRoot.Path, "k8s", "statefulset.yaml"));

    [Fact]
    public void README_states_the_formula_the_scale_lab_checks()
    {
        var m = Regex.Match(Readme, @"\*\*(\d+) \+ ([\d.]+) × the servers it holds \+ the stage budget\*\* \(`StageMemoryBudget`,\s+(\d+) MiB by default");
        Assert.True(m.Success, "README's \"Memory per node\" line is not where the test looks");
        Assert.Equal(PodMemory.BaseMiB, int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture));
        Assert.Equal(PodMemory.PerServerMiB, double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture));
        Assert.Equal(PodMemory.StageMiB, int.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture));
        // Its worked example.
        var e = Regex.Match(Readme, @"1,000 servers on 3 nodes, request (\d+) MiB and limit (\d+) MiB");
        Assert.True(e.Success);
        Assert.Equal(PodMemory.RequestMiB(1000, 3), int.Parse(e.Groups[1].Value, CultureInfo.InvariantCulture));
        Assert.Equal(PodMemory.LimitMiB(1000, 3), int.Parse(e.Groups[2].Value, CultureInfo.InvariantCulture));
    }

    [Fact]
    public void The_StatefulSet_requests_and_limits_what_the_formula_gives_for_the_fleet_it_says_it_is_sized_for()
    {
        var sts = KubernetesYaml.LoadAllFromString(StatefulSetText).OfType<V1StatefulSet>().Single();
        var fleet = Regex.Match(StatefulSetText, @"Sized for a fleet of (\d+) servers on the (\d+) replicas");
        Assert.True(fleet.Success, "statefulset.yaml no longer says the fleet it is sized for");
        var servers = int.Parse(fleet.Groups[1].Value, CultureInfo.InvariantCulture);
        var replicas = int.Parse(fleet.Groups[2].Value, CultureInfo.InvariantCulture);
        Assert.Equal(sts.Spec.Replicas, replicas);
        var resources = sts.Spec.Template.Spec.Containers.Single(c => c.Name == "powa-cluster").Resources;
        Assert.Equal($"{PodMemory.RequestMiB(servers, replicas)}Mi", resources.Requests["memory"].ToString());
        Assert.Equal($"{PodMemory.LimitMiB(servers, replicas)}Mi", resources.Limits["memory"].ToString());
    }

    [Fact]
    public void The_limit_is_a_node_s_share_once_another_is_lost_with_a_full_stage_budget()
    {
        Assert.Equal((int)Math.Ceiling(PodMemory.BaseMiB + PodMemory.PerServerMiB * 500 + PodMemory.StageMiB), PodMemory.LimitMiB(1000, 3));
        Assert.Equal((int)Math.Ceiling(PodMemory.BaseMiB + PodMemory.PerServerMiB * 334), PodMemory.RequestMiB(1000, 3));
        Assert.True(PodMemory.LimitMiB(1000, 4) < PodMemory.LimitMiB(1000, 3));
    }
}
