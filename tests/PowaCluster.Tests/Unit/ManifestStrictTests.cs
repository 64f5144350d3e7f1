using k8s;
using k8s.Models;
using Xunit;

namespace PowaCluster.Tests.Unit;

/// <summary>
/// k8s/ read with the Kubernetes API's own types, strictly (KubernetesClient's YAML reader: an unknown field or
/// a wrong type fails, as the API server would refuse it), then the rules the pods need to start and to stay
/// least-privileged. DeploymentConfigTests checks the same files against what the code expects.
/// </summary>
public sealed class ManifestStrictTests
{
    static readonly string K8s = Path.Combine(Support.RepoRoot.Path, "k8s");


    static List<object> LoadAll() =>
        Directory.GetFiles(K8s, "*.yaml").Where(f => Path.GetFileName(f) != "kustomization.yaml").Order()
            .SelectMany(f => KubernetesYaml.LoadAllFromString(File.ReadAllText(f), strict: true)).ToList();

    [Fact]
    public void Every_manifest_is_a_valid_object_of_the_Kubernetes_API()
    {
        var all = LoadAll();
        Assert.Contains(all, o => o is V1StatefulSet);
        Assert.Contains(all, o => o is V1Service);
        Assert.Contains(all, o => o is V1PodDisruptionBudget);
        Assert.Contains(all, o => o is V1NetworkPolicy);
        Assert.Contains(all, o => o is V1Role);
        Assert.Contains(all, o => o is V1RoleBinding);
        Assert.Contains(all, o => o is V1ServiceAccount);
        Assert.Equal(2, all.OfType<V1Secret>().Count()); // the two examples, out of the kustomization

        // Strict: what the API server would refuse fails here too.
        var sts = File.ReadAllText(Path.Combine(K8s, "statefulset.yaml"));
        Assert.ThrowsAny<Exception>(() => KubernetesYaml.LoadAllFromString(sts.Replace("  replicas: 3", "  replicas: 3\n  replicaz: 3"), strict: true));
        Assert.ThrowsAny<Exception>(() => KubernetesYaml.LoadAllFromString(sts.Replace("runAsUser: 1654", "runAsUser: app"), strict: true));
    }

    [Fact]
    public void The_pods_start_and_hold_least_privilege()
    {
        var all = LoadAll();
        var sts = Assert.Single(all.OfType<V1StatefulSet>());
        var pod = sts.Spec.Template.Spec;
        var labels = sts.Spec.Template.Metadata.Labels;
        Assert.Equal(sts.Spec.Selector.MatchLabels, labels);
        var container = Assert.Single(pod.Containers);

        // runAsNonRoot needs a numeric user: the kubelet cannot check a name.
        Assert.True(pod.SecurityContext.RunAsNonRoot);
        Assert.True(pod.SecurityContext.RunAsUser > 0);
        Assert.Equal("RuntimeDefault", pod.SecurityContext.SeccompProfile.Type);
        var sc = container.SecurityContext;
        Assert.False(sc.AllowPrivilegeEscalation);
        Assert.True(sc.ReadOnlyRootFilesystem);
        Assert.False(sc.Privileged ?? false);
        Assert.Equal(["ALL"], sc.Capabilities.Drop);
        Assert.Null(sc.Capabilities.Add);

        // Probes on named ports the container declares.
        var ports = container.Ports.ToDictionary(p => p.Name, p => p.ContainerPort);
        foreach (var probe in new[] { container.StartupProbe, container.LivenessProbe, container.ReadinessProbe })
        {
            Assert.NotNull(probe.HttpGet);
            Assert.True(ports.ContainsKey(probe.HttpGet.Port.Value), $"probe on port {probe.HttpGet.Port.Value}");
        }

        // Volumes: a writable /tmp, the TLS Secret read-only, nothing from the host.
        Assert.All(pod.Volumes, v => Assert.Null(v.HostPath));
        Assert.Contains(pod.Volumes, v => v.EmptyDir is not null && container.VolumeMounts.Any(m => m.Name == v.Name && m.MountPath == "/tmp"));
        var tls = Assert.Single(pod.Volumes, v => v.Secret is not null);
        Assert.True(container.VolumeMounts.Single(m => m.Name == tls.Name).ReadOnlyProperty);
        var tlsSecret = all.OfType<V1Secret>().Single(s => s.Metadata.Name == tls.Secret.SecretName);
        Assert.Equal("kubernetes.io/tls", tlsSecret.Type);

        // The disruption budget and the network policy select these pods; the remoting port admits these pods only.
        var pdb = Assert.Single(all.OfType<V1PodDisruptionBudget>());
        Assert.Equal(labels, pdb.Spec.Selector.MatchLabels);
        Assert.Equal("1", pdb.Spec.MaxUnavailable.Value);
        var policy = Assert.Single(all.OfType<V1NetworkPolicy>());
        Assert.Equal(labels, policy.Spec.PodSelector.MatchLabels);
        var remoting = Assert.Single(policy.Spec.Ingress, r => r.Ports.Any(p => p.Port.Value == "remoting"));
        Assert.Equal(labels, Assert.Single(remoting.FromProperty).PodSelector.MatchLabels);

        // RBAC: list pods, nothing else.
        var rule = Assert.Single(Assert.Single(all.OfType<V1Role>()).Rules);
        Assert.Equal(["pods"], rule.Resources);
        Assert.Equal(["list"], rule.Verbs);
        Assert.Equal(sts.Spec.Template.Spec.ServiceAccountName, Assert.Single(all.OfType<V1ServiceAccount>()).Metadata.Name);
    }
}
