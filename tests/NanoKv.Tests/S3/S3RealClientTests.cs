using System.Security.Cryptography;
using NanoKv.Tests.Infrastructure;

namespace NanoKv.Tests.S3;

/// <summary>Unmodified real clients from Debian against the S3 endpoint: the AWS CLI (cp/ls/rm/sync with a 64 MB multipart file
/// downloaded with ranged GETs), rclone (copy/check/delete) and a boto3 script.</summary>
public sealed class S3RealClientTests(S3ClusterFixture fx) : IClassFixture<S3ClusterFixture>
{
    private static readonly TimeSpan ToolTimeout = TimeSpan.FromMinutes(4);

    private Dictionary<string, string> AwsEnv(string home) => new()
    {
        ["AWS_ACCESS_KEY_ID"] = S3ClusterFixture.Ak1,
        ["AWS_SECRET_ACCESS_KEY"] = S3ClusterFixture.Sk1,
        ["AWS_DEFAULT_REGION"] = "us-east-1",
        ["AWS_EC2_METADATA_DISABLED"] = "true",
        ["AWS_CONFIG_FILE"] = Path.Combine(home, "aws-config"),
        ["AWS_SHARED_CREDENTIALS_FILE"] = Path.Combine(home, "aws-credentials"),
        ["HOME"] = home,
    };

    private static void WriteFiles(string dir, int count, int size)
    {
        Directory.CreateDirectory(dir);
        for (var i = 0; i < count; i++)
        {
            File.WriteAllBytes(Path.Combine(dir, $"file {i}.bin"), AwsChunkedStreamTests.RandomBytes(size + i));
        }
        Directory.CreateDirectory(Path.Combine(dir, "sub"));
        File.WriteAllText(Path.Combine(dir, "sub", "nested+name.txt"), "nested");
    }

    private static void Ok((int Code, string Output) r, string what) =>
        Assert.True(r.Code == 0, $"{what} exited {r.Code}:\n{r.Output}");

    [ToolFact("aws")]
    public async Task AwsCliCopyListSyncAndRemove()
    {
        var home = TempDir.Create("awscli");
        try
        {
            var env = AwsEnv(home);
            var bucket = S3ClusterFixture.Bucket("awscli");
            Task<(int, string)> Aws(params string[] args) => ToolRunner.Run("/usr/bin/aws", ["--endpoint-url", fx.S3Url, .. args], env, ToolTimeout);

            Ok(await Aws("s3", "mb", $"s3://{bucket}"), "aws s3 mb");
            var big = Path.Combine(home, "big.bin");
            var data = AwsChunkedStreamTests.RandomBytes(64 * 1024 * 1024);
            await File.WriteAllBytesAsync(big, data);
            Ok(await Aws("s3", "cp", big, $"s3://{bucket}/data/big.bin"), "aws s3 cp (upload, multipart)");
            var head = await Aws("s3api", "head-object", "--bucket", bucket, "--key", "data/big.bin");
            Ok(head, "aws s3api head-object");
            Assert.Contains("-8", head.Item2, StringComparison.Ordinal); // 64 MB in the CLI's 8 MB parts: md5-of-md5s "-8"
            var down = Path.Combine(home, "down.bin");
            Ok(await Aws("s3", "cp", $"s3://{bucket}/data/big.bin", down), "aws s3 cp (download, ranged)");
            Assert.Equal(SHA256.HashData(data), SHA256.HashData(await File.ReadAllBytesAsync(down)));

            var src = Path.Combine(home, "tree");
            WriteFiles(src, 5, 10_000);
            Ok(await Aws("s3", "sync", src, $"s3://{bucket}/tree/"), "aws s3 sync");
            var ls = await Aws("s3", "ls", "--recursive", $"s3://{bucket}/tree/");
            Ok(ls, "aws s3 ls");
            Assert.Contains("tree/file 4.bin", ls.Item2, StringComparison.Ordinal);
            Assert.Contains("tree/sub/nested+name.txt", ls.Item2, StringComparison.Ordinal);
            var second = await Aws("s3", "sync", src, $"s3://{bucket}/tree/");
            Ok(second, "aws s3 sync (nothing to do)");
            Assert.DoesNotContain("upload:", second.Item2, StringComparison.Ordinal);

            Ok(await Aws("s3", "rm", "--recursive", $"s3://{bucket}/"), "aws s3 rm --recursive");
            var empty = await Aws("s3", "ls", "--recursive", $"s3://{bucket}/");
            Assert.DoesNotContain("tree/", empty.Item2, StringComparison.Ordinal);
            Ok(await Aws("s3", "rb", $"s3://{bucket}"), "aws s3 rb");
        }
        finally
        {
            TempDir.Delete(home);
        }
    }

    [ToolFact("rclone")]
    public async Task RcloneCopyCheckAndDelete()
    {
        var home = TempDir.Create("rclone");
        try
        {
            var env = new Dictionary<string, string>
            {
                ["RCLONE_CONFIG"] = Path.Combine(home, "rclone.conf"),
                ["RCLONE_CONFIG_NKV_TYPE"] = "s3",
                ["RCLONE_CONFIG_NKV_PROVIDER"] = "Other",
                ["RCLONE_CONFIG_NKV_ACCESS_KEY_ID"] = S3ClusterFixture.Ak1,
                ["RCLONE_CONFIG_NKV_SECRET_ACCESS_KEY"] = S3ClusterFixture.Sk1,
                ["RCLONE_CONFIG_NKV_ENDPOINT"] = fx.S3Url,
                ["RCLONE_CONFIG_NKV_REGION"] = "us-east-1",
                ["HOME"] = home,
            };
            var bucket = S3ClusterFixture.Bucket("rclone");
            // A 503 (with Retry-After) is S3's retryable answer, and the aws CLI retries it by default: under the
            // whole suite's load a test cluster can briefly see no volume alive (heartbeats count as missed after
            // 2 s here), and CI once failed this copy on that. Low-level retries only; no whole-run retries.
            Task<(int, string)> Rclone(params string[] args) => ToolRunner.Run("/usr/bin/rclone", [.. args, "--retries", "1", "--low-level-retries", "3"], env, ToolTimeout);
            var src = Path.Combine(home, "tree");
            WriteFiles(src, 6, 50_000);
            await File.WriteAllBytesAsync(Path.Combine(src, "large.bin"), AwsChunkedStreamTests.RandomBytes(12 * 1024 * 1024));

            Ok(await Rclone("mkdir", $"nkv:{bucket}"), "rclone mkdir");
            Ok(await Rclone("copy", src, $"nkv:{bucket}/tree", "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M"), "rclone copy");
            Ok(await Rclone("check", src, $"nkv:{bucket}/tree"), "rclone check");
            var lsf = await Rclone("lsf", "-R", $"nkv:{bucket}/tree");
            Ok(lsf, "rclone lsf");
            Assert.Contains("sub/nested+name.txt", lsf.Item2, StringComparison.Ordinal);
            var back = Path.Combine(home, "back");
            Ok(await Rclone("copy", $"nkv:{bucket}/tree", back), "rclone copy (download)");
            Assert.Equal(SHA256.HashData(await File.ReadAllBytesAsync(Path.Combine(src, "large.bin"))), SHA256.HashData(await File.ReadAllBytesAsync(Path.Combine(back, "large.bin"))));
            Ok(await Rclone("delete", $"nkv:{bucket}/tree"), "rclone delete");
            var after = await Rclone("lsf", "-R", $"nkv:{bucket}");
            Ok(after, "rclone lsf after delete");
            Assert.DoesNotContain(".bin", after.Item2, StringComparison.Ordinal);
        }
        finally
        {
            TempDir.Delete(home);
        }
    }

    private const string Boto3Check = """
        import hashlib, os, sys, urllib.error, urllib.request
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        endpoint, ak, sk, bucket, workdir = sys.argv[1:6]
        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ak, aws_secret_access_key=sk,
                          region_name="us-east-1", config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="hello/wörld.txt", Body=b"hello boto3", ContentType="text/plain", Metadata={"who": "boto3"})
        got = s3.get_object(Bucket=bucket, Key="hello/wörld.txt")
        assert got["Body"].read() == b"hello boto3"
        assert got["ContentType"] == "text/plain" and got["Metadata"]["who"] == "boto3", got
        assert s3.get_object(Bucket=bucket, Key="hello/wörld.txt", Range="bytes=6-")["Body"].read() == b"boto3"

        big = os.path.join(workdir, "big.bin")
        data = os.urandom(12 * 1024 * 1024)
        open(big, "wb").write(data)
        cfg = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
        s3.upload_file(big, bucket, "big.bin", Config=cfg)
        assert s3.head_object(Bucket=bucket, Key="big.bin")["ETag"].endswith('-3"')
        s3.download_file(bucket, "big.bin", big + ".down", Config=cfg)
        assert hashlib.sha256(open(big + ".down", "rb").read()).digest() == hashlib.sha256(data).digest()

        keys = sorted(o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 1}) for o in p.get("Contents", []))
        assert keys == ["big.bin", "hello/wörld.txt"], keys
        listed = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
        assert [p["Prefix"] for p in listed["CommonPrefixes"]] == ["hello/"], listed

        url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "hello/wörld.txt"}, ExpiresIn=300)
        try:
            assert urllib.request.urlopen(url).read() == b"hello boto3"
        except urllib.error.HTTPError as e:
            sys.exit(f"presigned GET {url} failed: {e.code} {e.read()!r}")

        s3.copy_object(Bucket=bucket, Key="copy.txt", CopySource={"Bucket": bucket, "Key": "hello/wörld.txt"})
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in ["big.bin", "hello/wörld.txt", "copy.txt"]]})
        assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
        s3.delete_bucket(Bucket=bucket)
        print("boto3 ok")
        """;

    [ToolFact("boto3")]
    public async Task Boto3Script()
    {
        var work = TempDir.Create("boto3");
        try
        {
            var script = Path.Combine(work, "s3check.py");
            await File.WriteAllTextAsync(script, Boto3Check);
            var r = await ToolRunner.Run("/usr/bin/python3", [script, fx.S3Url, S3ClusterFixture.Ak1, S3ClusterFixture.Sk1, S3ClusterFixture.Bucket("boto3"), work],
                new Dictionary<string, string> { ["HOME"] = work, ["AWS_EC2_METADATA_DISABLED"] = "true", ["AWS_CONFIG_FILE"] = Path.Combine(work, "none"), ["AWS_SHARED_CREDENTIALS_FILE"] = Path.Combine(work, "none") },
                ToolTimeout);
            Ok(r, "boto3 script");
            Assert.Contains("boto3 ok", r.Output, StringComparison.Ordinal);
        }
        finally
        {
            TempDir.Delete(work);
        }
    }
}
