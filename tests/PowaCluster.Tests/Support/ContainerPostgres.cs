using DotNet.Testcontainers.Builders;
using DotNet.Testcontainers.Images;
using Npgsql;
using PowaCluster.Lab.Embedded;
using Testcontainers.PostgreSql;

namespace PowaCluster.Tests.Support;

/// <summary>
/// Where a Docker engine is reachable, the lab's instances run in containers (Testcontainers.PostgreSql)
/// built from docker/Dockerfile: Debian 12's PostgreSQL 15 and PoWA packages, as on our machines.
/// The published port is reachable on every loopback address, like a local instance.
/// POWACLUSTER_TEST_BACKEND=local forces throwaway local instances, =docker forces containers.
/// </summary>
public sealed class ContainerPostgres : IPostgresInstance
{
    static readonly SemaphoreSlim ImageLock = new(1, 1);
    static IFutureDockerImage? _image;
    readonly PostgreSqlContainer _container;

    public string Name { get; }
    public int Port { get; }
    public string Password { get; }
    public int LoopbackAddresses { get; }

    ContainerPostgres(string name, PostgreSqlContainer container, string password, int loopbackAddresses)
    {
        Name = name; _container = container; Password = password; LoopbackAddresses = loopbackAddresses;
        Port = container.GetMappedPublicPort(5432);
    }

    public static bool ShouldUse()
    {
        var backend = Environment.GetEnvironmentVariable("POWACLUSTER_TEST_BACKEND");
        if (backend == "local") return false;
        if (backend == "docker") return true;
        return !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("DOCKER_HOST")) || DockerSocketAnswers();
    }

    static bool DockerSocketAnswers()
    {
        const string path = "/var/run/docker.sock";
        if (!File.Exists(path)) return false;
        try
        {
            using var s = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
            s.Connect(new System.Net.Sockets.UnixDomainSocketEndPoint(path));
            return true;
        }
        catch (System.Net.Sockets.SocketException) { return false; }
    }

    public static readonly PostgresFactory Factory = async (name, n) => await StartAsync(name, n);

    public static async Task<ContainerPostgres> StartAsync(string name, int loopbackAddresses)
    {
        await ImageLock.WaitAsync();
        try
        {
            if (_image is null)
            {
                var image = new ImageFromDockerfileBuilder()
                    .WithDockerfileDirectory(Path.Combine(AppContext.BaseDirectory, "Support", "docker"))
                    .WithDockerfile("Dockerfile")
                    .WithName("powa-cluster-test-pg15-powa:4.1.4")
                    .Build();
                await image.CreateAsync();
                _image = image;
            }
        }
        finally { ImageLock.Release(); }
        var password = Convert.ToHexString(Guid.NewGuid().ToByteArray()).ToLowerInvariant();
        var container = new PostgreSqlBuilder(_image)
            .WithUsername(LocalPostgres.SuperUser)
            .WithPassword(password)
            .WithDatabase("postgres")
            .Build();
        await container.StartAsync();
        return new ContainerPostgres(name, container, password, loopbackAddresses);
    }

    public string Host(int i = 1)
    {
        if (i < 1 || i > LoopbackAddresses) throw new ArgumentOutOfRangeException(nameof(i));
        return $"127.0.0.{i}";
    }

    public NpgsqlConnectionStringBuilder ConnectionString(string database = "postgres", int hostIndex = 1) => new()
    {
        Host = Host(hostIndex),
        Port = Port,
        Username = LocalPostgres.SuperUser,
        Password = Password,
        Database = database,
        Pooling = false,
        Timeout = 10,
        CommandTimeout = 60,
    };

    public ValueTask DisposeAsync() => _container.DisposeAsync();
}
