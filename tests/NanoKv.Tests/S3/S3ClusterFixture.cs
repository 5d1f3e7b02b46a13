using Amazon.Runtime;
using Amazon.S3;
using NanoKv.Coordinator.Api.S3;
using NanoKv.S3;
using NanoKv.Tests.Infrastructure;

namespace NanoKv.Tests.S3;

/// <summary>One real cluster (3 volumes, coordinator with its S3 listener on an ephemeral port) shared by a test class; each test uses its own buckets.</summary>
public sealed class S3ClusterFixture : IAsyncLifetime
{
    public const string Ak1 = "NKVTESTALICE00000000";
    public const string Sk1 = "alice/secret+key0000000000000000000000000";
    public const string Ak2 = "NKVTESTBOB0000000000";
    public const string Sk2 = "bob-secret-key-00000000000000000000000000";

    /// <summary>The configured virtual-host domain (`--s3-domain`): Host "bucket.s3.example.test" addresses bucket.</summary>
    public const string VhostDomain = "s3.example.test";

    public TestCluster Cluster { get; private set; } = null!;

    public string S3Url => Cluster.Coordinator.S3Url!;

    public async Task InitializeAsync() =>
        Cluster = await TestCluster.StartAsync(configure: o => o with
        {
            S3 = new S3Options { Port = 0, Users = S3Users.Parse($"{Ak1}:{Sk1},{Ak2}:{Sk2}"), Domains = ["localhost", VhostDomain] },
            // No test here stops a volume: the production health timings, not the fast ones (suspect after 1 s
            // without a heartbeat), which a loaded two-core CI machine crossed for all three volumes at once (503).
            Health = new NanoKv.Coordinator.HealthSettings(),
        });

    public async Task DisposeAsync() => await Cluster.DisposeAsync();

    /// <summary>AWSSDK.S3 with default settings (flexible checksums on), path style, against the S3 listener.</summary>
    public AmazonS3Client Client(string ak = Ak1, string sk = Sk1) => new(new BasicAWSCredentials(ak, sk), new AmazonS3Config
    {
        ServiceURL = S3Url,
        ForcePathStyle = true,
        AuthenticationRegion = "us-east-1",
        MaxErrorRetry = 0,
        Timeout = TimeSpan.FromMinutes(2),
    });

    public static string Bucket(string name) => $"{name}-{Guid.NewGuid():N}"[..Math.Min(63, name.Length + 13)].TrimEnd('-');
}
