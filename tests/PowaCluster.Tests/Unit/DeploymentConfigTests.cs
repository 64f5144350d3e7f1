using Microsoft.Extensions.Configuration;
using PowaCluster.Collector.Configuration;
using PowaCluster.Host.Startup;
using Xunit;
using YamlDotNet.Core;
using YamlDotNet.Serialization;

namespace PowaCluster.Tests.Unit;

/// <summary>
/// The deployment files against the code: every manifest of k8s/ parses and carries what joining the cluster
/// depends on (labels, port names and numbers, service name, RBAC, the Secret), and every settings file of
/// cluster-config/ gives settings the collector accepts.
/// </summary>
public sealed class DeploymentConfigTests
{
    static readonly string Root = Support.RepoRoot.Path;

    sealed record Doc(string File, Dictionary<object, object> Root)
    {
        public string Kind => (string)Root["kind"];
        public string Name => (string)Map(Root["metadata"])["name"];
    }

    static Dictionary<object, object> Map(object o) => Assert.IsType<Dictionary<object, object>>(o);
    static List<object> List(object o) => Assert.IsType<List<object>>(o);
    static Dictionary<object, object> At(object o, params string[] path) => Map(path.Aggregate(o, (cur, k) => Map(cur)[k]));
    static string Str(object o, params string[] path) => (string)Map(path[..^1].Aggregate(o, (cur, k) => Map(cur)[k]))[path[^1]];

    static List<Doc> Manifests()
    {
        var yaml = new DeserializerBuilder().Build();
        var docs = new List<Doc>();
        foreach (var file in Directory.GetFiles(Path.Combine(Root, "k8s"), "*.yaml").Order())
        {
            using var reader = new StringReader(File.ReadAllText(file));
            var parser = new YamlDotNet.Core.Parser(reader);
            parser.Consume<YamlDotNet.Core.Events.StreamStart>();
            while (parser.Accept<YamlDotNet.Core.Events.DocumentStart>(out _))
            {
                var o = yaml.Deserialize<object>(parser);
                if (o is Dictionary<object, object> d) docs.Add(new Doc(Path.GetFileName(file), d));
            }
        }
        return docs;
    }

    [Fact]
    public void Kubernetes_manifests_match_what_joining_the_cluster_expects()
    {
        var docs = Manifests();
        Assert.Contains(docs, d => d.File == "kustomization.yaml");
        var kustomized = List(docs.Single(d => d.File == "kustomization.yaml").Root["resources"]).Cast<string>().ToList();
        foreach (var f in Directory.GetFiles(Path.Combine(Root, "k8s"), "*.yaml").Select(Path.GetFileName)
                     .Where(f => f is not "kustomization.yaml" and not "secret.example.yaml" and not "tls.example.yaml"))
            Assert.Contains(f, kustomized);
        // The Secret is not applied with the rest: an apply must never replace the real one with the example.
        Assert.DoesNotContain(kustomized, f => docs.Any(d => d.File == f && d.Kind == "Secret"));

        var sts = docs.Single(d => d.Kind == "StatefulSet");
        var spec = At(sts.Root, "spec");
        Assert.Equal("Parallel", spec["podManagementPolicy"]);
        // Pods are replaced by k8s/rollout.sh, youngest first (the singletons move once), not by RollingUpdate's ordinal order.
        Assert.Equal("OnDelete", At(spec, "updateStrategy")["type"]);
        var rollout = File.ReadAllText(Path.Combine(Root, "k8s", "rollout.sh"));
        Assert.Contains("--sort-by=.status.startTime", rollout);
        Assert.Contains("| tac)", rollout);
        Assert.True(File.GetUnixFileMode(Path.Combine(Root, "k8s", "rollout.sh")).HasFlag(UnixFileMode.UserExecute), "k8s/rollout.sh is not executable");
        var podLabels = At(spec, "template", "metadata", "labels");
        Assert.Equal(At(spec, "selector", "matchLabels"), podLabels);

        // The settings the pods run with: the container's environment, as the collector binds it.
        var container = Map(Assert.Single(List(At(spec, "template", "spec")["containers"])));
        var env = List(container["env"]).Select(Map).ToList();
        var plain = env.Where(e => e.ContainsKey("value")).ToDictionary(e => (string)e["name"], e => (string)e["value"]);
        var config = new ConfigurationBuilder().AddInMemoryCollection(plain
            .Where(kv => kv.Key.StartsWith("PowaCluster__"))
            .Select(kv => KeyValuePair.Create(kv.Key.Replace("__", ":"), (string?)kv.Value.Replace("$(POD_IP)", "10.1.2.3")))).Build();
        var settings = new CollectorSettings();
        config.GetSection(CollectorSettings.SectionName).Bind(settings);
        settings.Validate();
        Assert.Equal(DiscoveryModes.Kubernetes, settings.Discovery);
        Assert.Equal("$(POD_IP)", plain["PowaCluster__ClusterPublicHost"]);
        var podIp = env.Single(e => (string)e["name"] == "POD_IP");
        Assert.Equal("status.podIP", Str(podIp, "valueFrom", "fieldRef", "fieldPath"));
        Assert.True(env.IndexOf(podIp) < env.FindIndex(e => (string)e["name"] == "PowaCluster__ClusterPublicHost"),
            "POD_IP must come before the variable that uses it");

        // The spool is on a volume of its own (the root filesystem is read-only, and /tmp is not for it): the
        // directory the settings name is mounted.
        var mounts = List(container["volumeMounts"]).Select(Map).ToList();
        Assert.Contains(mounts, m => settings.SpoolDirectoryOrDefault == (string)m["mountPath"] && (string)m["name"] == "spool");

        // The pods are listed with PodLabelSelector, ServiceName in place of {0}...
        var selector = string.Format(settings.Kubernetes.PodLabelSelector, settings.Kubernetes.ServiceName).Split('=');
        Assert.Equal(selector[1], podLabels[selector[0]]);
        // ...and joins them on their container port named RemotingPortName, which must be Akka.Remote's port.
        var ports = List(container["ports"]).Select(Map).ToDictionary(p => (string)p["name"], p => int.Parse(p["containerPort"].ToString()!));
        Assert.Equal(settings.ClusterPort, ports[settings.Kubernetes.RemotingPortName]);
        Assert.Equal(settings.HttpPort, ports["http"]);

        // Probes on the HTTP endpoints; a startup probe that outlasts the join timeout (a pod that cannot join
        // exits by itself); a grace period longer than the shutdown (hand-off, then leaving).
        foreach (var (probe, path) in new[] { ("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/ready") })
        {
            var get = At(container, probe, "httpGet");
            Assert.Equal(path, get["path"]);
            Assert.Equal("http", get["port"]);
        }
        var startup = At(container, "startupProbe");
        Assert.True(int.Parse((string)startup["periodSeconds"]) * int.Parse((string)startup["failureThreshold"]) > settings.Kubernetes.JoinTimeout.TotalSeconds);
        var grace = int.Parse((string)At(spec, "template", "spec")["terminationGracePeriodSeconds"]);
        Assert.True(grace > CollectorHost.ShutdownTimeout(settings).TotalSeconds, $"terminationGracePeriodSeconds {grace}");

        // Least privilege: the image's user by number (the kubelet refuses runAsNonRoot with a user name), the
        // same number as the Dockerfile's USER; a read-only root with /tmp writable; nothing more than needed.
        var podSecurity = At(spec, "template", "spec", "securityContext");
        Assert.True(bool.Parse(podSecurity["runAsNonRoot"].ToString()!));
        var uid = int.Parse(podSecurity["runAsUser"].ToString()!);
        Assert.True(uid > 0);
        Assert.Contains($"USER {uid}\n", File.ReadAllText(Path.Combine(Root, "k8s", "Dockerfile")).ReplaceLineEndings("\n"));
        Assert.Equal("RuntimeDefault", Str(podSecurity, "seccompProfile", "type"));
        var security = At(container, "securityContext");
        Assert.Equal("false", security["allowPrivilegeEscalation"].ToString()!.ToLowerInvariant());
        Assert.Equal("true", security["readOnlyRootFilesystem"].ToString()!.ToLowerInvariant());
        Assert.Equal(["ALL"], List(At(security, "capabilities")["drop"]).Cast<string>());
        var tmpMount = List(container["volumeMounts"]).Select(Map).Single(m => (string)m["mountPath"] == "/tmp");
        var tmpVolume = List(At(spec, "template", "spec")["volumes"]).Select(Map).Single(v => (string)v["name"] == (string)tmpMount["name"]);
        Assert.True(tmpVolume.ContainsKey("emptyDir"));
        // Spread over the hosts, by the pods' own label.
        var antiAffinity = Map(List(At(spec, "template", "spec", "affinity", "podAntiAffinity")["preferredDuringSchedulingIgnoredDuringExecution"])[0]);
        Assert.Equal("kubernetes.io/hostname", Str(antiAffinity, "podAffinityTerm", "topologyKey"));
        Assert.Equal(podLabels, At(antiAffinity, "podAffinityTerm", "labelSelector", "matchLabels"));

        // Only the collector's pods reach the remoting port; the HTTP port stays open to the probes.
        var policy = docs.Single(d => d.Kind == "NetworkPolicy");
        Assert.Contains(policy.File, kustomized);
        Assert.Equal(podLabels, At(policy.Root, "spec", "podSelector", "matchLabels"));
        var ingress = List(At(policy.Root, "spec")["ingress"]).Select(Map).ToList();
        var remotingRules = ingress.Where(r => List(r["ports"]).Select(Map).Any(p => (string)p["port"] == settings.Kubernetes.RemotingPortName)).ToList();
        var remotingRule = Assert.Single(remotingRules);
        Assert.Equal(podLabels, At(Map(Assert.Single(List(remotingRule["from"]))), "podSelector", "matchLabels"));
        Assert.Contains(ingress, r => !r.ContainsKey("from") && List(r["ports"]).Select(Map).Any(p => (string)p["port"] == "http"));

        // Cluster TLS: the three files the settings name are keys of a kubernetes.io/tls Secret mounted read-only,
        // which the kustomization leaves out like the repository's.
        Assert.True(settings.Tls.EnabledFor(settings));
        var tlsMount = List(container["volumeMounts"]).Select(Map).Single(m => settings.Tls.CaPath!.StartsWith((string)m["mountPath"] + "/"));
        Assert.Equal("true", tlsMount["readOnly"].ToString()!.ToLowerInvariant());
        var tlsVolume = List(At(spec, "template", "spec")["volumes"]).Select(Map).Single(v => (string)v["name"] == (string)tlsMount["name"]);
        var tlsSecret = docs.Single(d => d.Kind == "Secret" && d.Name == Str(tlsVolume, "secret", "secretName"));
        Assert.Equal("kubernetes.io/tls", tlsSecret.Root["type"]);
        Assert.DoesNotContain(tlsSecret.File, kustomized);
        foreach (var path in new[] { settings.Tls.CertificatePath!, settings.Tls.KeyPath!, settings.Tls.CaPath! })
        {
            Assert.Equal((string)tlsMount["mountPath"], Path.GetDirectoryName(path));
            Assert.True(At(tlsSecret.Root, "data").ContainsKey(Path.GetFileName(path)), $"{Path.GetFileName(path)} in the TLS Secret");
        }

        // The repository DSN from a Secret that the manifests define, with that key.
        var dsn = env.Single(e => (string)e["name"] == "PowaCluster__RepositoryDsn");
        var secretRef = At(dsn, "valueFrom", "secretKeyRef");
        var secret = docs.Single(d => d.Kind == "Secret" && d.Name == (string)secretRef["name"]);
        Assert.True(At(secret.Root, "stringData").ContainsKey(secretRef["key"]));

        // The headless service: the StatefulSet's, selecting its pods, with the remoting port.
        var svc = docs.Single(d => d.Kind == "Service");
        Assert.Equal(svc.Name, spec["serviceName"]);
        Assert.Equal("None", At(svc.Root, "spec")["clusterIP"]);
        Assert.Equal(podLabels, At(svc.Root, "spec", "selector"));
        Assert.Contains(List(At(svc.Root, "spec")["ports"]).Select(Map), p => (string)p["targetPort"] == settings.Kubernetes.RemotingPortName);

        // RBAC: the pods' service account may list pods.
        var account = (string)At(spec, "template", "spec")["serviceAccountName"];
        Assert.Contains(docs, d => d.Kind == "ServiceAccount" && d.Name == account);
        var binding = docs.Single(d => d.Kind == "RoleBinding");
        Assert.Contains(List(binding.Root["subjects"]).Select(Map), s => (string)s["kind"] == "ServiceAccount" && (string)s["name"] == account);
        var role = docs.Single(d => d.Kind == "Role" && d.Name == Str(binding.Root, "roleRef", "name"));
        var rule = Map(Assert.Single(List(role.Root["rules"])));
        Assert.Equal(["pods"], List(rule["resources"]).Cast<string>());
        Assert.Equal(["list"], List(rule["verbs"]).Cast<string>()); // one list call (Kubernetes/KubernetesPods.cs), nothing else

        // The disruption budget selects the same pods and lets one go at a time.
        var pdb = docs.Single(d => d.Kind == "PodDisruptionBudget");
        Assert.Equal(podLabels, At(pdb.Root, "spec", "selector", "matchLabels"));
        Assert.Equal("1", At(pdb.Root, "spec")["maxUnavailable"]);
    }

    [Fact]
    public void Dockerfile_builds_the_host_and_runs_powa_cluster()
    {
        var text = File.ReadAllText(Path.Combine(Root, "k8s", "Dockerfile"));
        Assert.Contains("src/PowaCluster.Host/PowaCluster.Host.csproj", text);
        Assert.Contains("ENTRYPOINT [\"/app/powa-cluster\"]", text);
        Assert.Contains("aspnet:10.0", text); // Kestrel serves /healthz and /ready
        Assert.Contains("EXPOSE 4053 8080", text);
    }

    [Theory]
    [InlineData("one-node.appsettings.json", DiscoveryModes.Seeds, 0)]
    [InlineData("on-prem.appsettings.json", DiscoveryModes.Seeds, 2)]
    [InlineData("kubernetes.appsettings.json", DiscoveryModes.Kubernetes, 0)]
    public void Cluster_config_files_give_valid_settings(string file, string discovery, int seeds)
    {
        var config = new ConfigurationBuilder()
            .AddJsonFile(Path.Combine(Root, "cluster-config", file))
            // In Kubernetes the pod's IP comes from the environment.
            .AddInMemoryCollection([KeyValuePair.Create("PowaCluster:ClusterPublicHost", (string?)(discovery == DiscoveryModes.Kubernetes ? "10.1.2.3" : null))])
            .Build();
        var s = new CollectorSettings();
        config.GetSection(CollectorSettings.SectionName).Bind(s);
        s.Validate();
        Assert.Equal(discovery, s.Discovery);
        Assert.Equal(seeds, s.Seeds.Length);
        Assert.Equal(100, s.NumberOfShards);
        // Several nodes: mutual TLS, with the three files named.
        Assert.Equal(file != "one-node.appsettings.json", s.Tls.EnabledFor(s));
    }

    /// <summary>
    /// The host's own appsettings.json says what the code's defaults say (it shipped NumberOfShards 50 against a
    /// default of 100, and nodes with different shard counts collect a server twice).
    /// </summary>
    [Fact]
    public void The_shipped_appsettings_json_matches_the_code_defaults()
    {
        var config = new ConfigurationBuilder().AddJsonFile(Path.Combine(Root, "src", "PowaCluster.Host", "appsettings.json")).Build();
        var section = config.GetSection(CollectorSettings.SectionName);
        var shipped = new CollectorSettings();
        section.Bind(shipped);
        var defaults = new CollectorSettings();
        Assert.NotEmpty(section.GetChildren());
        foreach (var key in section.GetChildren().Select(c => c.Key))
        {
            var property = typeof(CollectorSettings).GetProperty(key);
            Assert.True(property is not null, $"appsettings.json sets {key}, which CollectorSettings does not have");
            Assert.Equal(property.GetValue(defaults), property.GetValue(shipped));
        }
    }
}
