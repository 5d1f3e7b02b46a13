using NanoKv.S3;
using NanoKv.S3.SigV4;
using static NanoKv.Tests.S3.S3TestRequests;

namespace NanoKv.Tests.S3;

/// <summary>SigV4 verification against the examples AWS publishes in "Signature Calculations for the Authorization Header" and
/// "Query String Authentication", plus the error cases.</summary>
public sealed class SigV4VerifierTests
{
    private const string EmptySha = SigV4Crypto.EmptySha256;

    [Fact]
    public void AwsExampleGetObjectWithRange()
    {
        var req = Request("GET", "/test.txt", "",
            ("Host", "examplebucket.s3.amazonaws.com"), ("Range", "bytes=0-9"), ("x-amz-content-sha256", EmptySha), ("x-amz-date", "20130524T000000Z"),
            ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"));
        var auth = Verifier(ExampleTime).Verify(req);
        Assert.Equal(AccessKey, auth.AccessKey);
        Assert.Equal(PayloadMode.SignedSha256, auth.Payload);
        Assert.Equal(EmptySha, auth.PayloadSha256Hex);
        Assert.False(auth.Presigned);
    }

    [Fact]
    public void SignerReproducesTheAwsExampleAndItsRequestsVerify()
    {
        var signer = new SigV4Signer(AccessKey, SecretKey, clock: new FixedClock(ExampleTime));
        var headers = signer.Sign("GET", "examplebucket.s3.amazonaws.com", "/test.txt", EmptySha, [new("Range", "bytes=0-9")]);
        Assert.EndsWith("Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41", headers.Single(h => h.Key == "Authorization").Value);

        // An encoded key with a query, UNSIGNED-PAYLOAD (what bench --s3 sends), verifies.
        var signed = signer.Sign("PUT", "127.0.0.1:9000", "/b/dir/%C3%BC%20x.bin?partNumber=1&uploadId=a%2Bb");
        var req = Request("PUT", "/b/dir/%C3%BC%20x.bin", "partNumber=1&uploadId=a%2Bb", [("Host", "127.0.0.1:9000"), .. signed.Select(h => (h.Key, h.Value))]);
        Assert.Equal(AccessKey, Verifier(ExampleTime).Verify(req).AccessKey);
    }

    [Fact]
    public void AwsExamplePutObjectWithDollarInKey()
    {
        var req = Request("PUT", "/test$file.text", "",
            ("Host", "examplebucket.s3.amazonaws.com"), ("Date", "Fri, 24 May 2013 00:00:00 GMT"), ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"), ("x-amz-content-sha256", "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"),
            ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"));
        Assert.Equal(AccessKey, Verifier(ExampleTime).Verify(req).AccessKey);
    }

    [Fact]
    public void AwsExampleGetBucketLifecycleAndListObjects()
    {
        var lifecycle = Request("GET", "/", "lifecycle",
            ("Host", "examplebucket.s3.amazonaws.com"), ("x-amz-date", "20130524T000000Z"), ("x-amz-content-sha256", EmptySha),
            ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;x-amz-content-sha256;x-amz-date,Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"));
        Verifier(ExampleTime).Verify(lifecycle);
        var list = Request("GET", "/", "?max-keys=2&prefix=J",
            ("Host", "examplebucket.s3.amazonaws.com"), ("x-amz-date", "20130524T000000Z"), ("x-amz-content-sha256", EmptySha),
            ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;x-amz-content-sha256;x-amz-date,Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"));
        Verifier(ExampleTime).Verify(list);
    }

    private const string PresignedQuery = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

    [Fact]
    public void AwsExamplePresignedUrlHonoursExpiry()
    {
        var req = Request("GET", "/test.txt", PresignedQuery, ("Host", "examplebucket.s3.amazonaws.com"));
        var auth = Verifier(ExampleTime.AddHours(23)).Verify(req);
        Assert.True(auth.Presigned);
        Assert.Equal(PayloadMode.Unsigned, auth.Payload);

        var expired = Assert.Throws<S3Exception>(() => Verifier(ExampleTime.AddSeconds(86401)).Verify(req));
        Assert.Equal(S3ErrorCode.AccessDenied, expired.Code);
        Assert.Contains("expired", expired.Message, StringComparison.Ordinal);

        var tampered = Request("GET", "/test2.txt", PresignedQuery, ("Host", "examplebucket.s3.amazonaws.com"));
        Assert.Equal(S3ErrorCode.SignatureDoesNotMatch, Assert.Throws<S3Exception>(() => Verifier(ExampleTime).Verify(tampered)).Code);
    }

    [Fact]
    public void SkewBeyondFifteenMinutesIsRequestTimeTooSkewed()
    {
        var req = Request("GET", "/test.txt", "",
            ("Host", "examplebucket.s3.amazonaws.com"), ("Range", "bytes=0-9"), ("x-amz-content-sha256", EmptySha), ("x-amz-date", "20130524T000000Z"),
            ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"));
        Verifier(ExampleTime.AddMinutes(14)).Verify(req);
        Verifier(ExampleTime.AddMinutes(-14)).Verify(req);
        var e = Assert.Throws<S3Exception>(() => Verifier(ExampleTime.AddMinutes(16)).Verify(req));
        Assert.Equal(S3ErrorCode.RequestTimeTooSkewed, e.Code);
        Assert.Equal(403, e.Status);
        Assert.Equal(S3ErrorCode.RequestTimeTooSkewed, Assert.Throws<S3Exception>(() => Verifier(ExampleTime.AddMinutes(-16)).Verify(req)).Code);
    }

    [Fact]
    public void WrongSecretUnknownKeyAnonymousAndMalformed()
    {
        (string, string)[] headers = [("Host", "h"), ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"), ("x-amz-date", "20130524T000000Z")];
        var wrong = Authorization("GET", "/b/k", "", headers, "UNSIGNED-PAYLOAD", "20130524T000000Z", secret: "nope");
        var e = Assert.Throws<S3Exception>(() => Verifier(ExampleTime).Verify(Request("GET", "/b/k", "", [.. headers, ("Authorization", wrong)])));
        Assert.Equal(S3ErrorCode.SignatureDoesNotMatch, e.Code);
        Assert.Contains(e.Details, d => d.Key == "CanonicalRequest");

        var unknown = Authorization("GET", "/b/k", "", headers, "UNSIGNED-PAYLOAD", "20130524T000000Z", accessKey: "NOSUCHKEY");
        Assert.Equal(S3ErrorCode.InvalidAccessKeyId,
            Assert.Throws<S3Exception>(() => Verifier(ExampleTime).Verify(Request("GET", "/b/k", "", [.. headers, ("Authorization", unknown)]))).Code);

        Assert.Equal(S3ErrorCode.AccessDenied, Assert.Throws<S3Exception>(() => Verifier(ExampleTime).Verify(Request("GET", "/b/k", "", headers))).Code);

        foreach (var bad in new[] { "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request", "AWS4-HMAC-SHA256 garbage",
            "AWS4-HMAC-SHA256 Credential=AK/2013/us-east-1/s3, SignedHeaders=host, Signature=00", "Bearer x" })
        {
            var m = Assert.Throws<S3Exception>(() => Verifier(ExampleTime).Verify(Request("GET", "/b/k", "", [.. headers, ("Authorization", bad)])));
            Assert.Equal(S3ErrorCode.AuthorizationHeaderMalformed, m.Code);
            Assert.Equal(400, m.Status);
        }
    }

    [Fact]
    public void CanonicalisationEncodesKeysAndSortsQuery()
    {
        // A key with space, unicode, '+', '=' and a query with repeated and valueless parameters, signed from the spec.
        const string key = "/bucket/dir/a b+c=d/ü~x*.txt";
        var canonicalUri = "/bucket/dir/a%20b%2Bc%3Dd/%C3%BC~x%2A.txt";
        const string canonicalQuery = "list-type=2&prefix=a%20b&uploads=";
        (string, string)[] headers = [("Host", "127.0.0.1:9000"), ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"), ("x-amz-date", "20130524T000000Z"), ("x-amz-meta-x", "  two   spaces ")];
        var auth = Authorization("GET", canonicalUri, canonicalQuery, [("Host", "127.0.0.1:9000"), ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"), ("x-amz-date", "20130524T000000Z"), ("x-amz-meta-x", "two spaces")],
            "UNSIGNED-PAYLOAD", "20130524T000000Z");
        // The wire form: the client encoded the path its own way (here: '+' and '=' raw, '*' raw) and the query out of order.
        var req = Request("GET", "/bucket/dir/a%20b+c=d/%C3%BC~x*.txt", "uploads&prefix=a%20b&list-type=2", [.. headers, ("Authorization", auth)]);
        Assert.Equal(PayloadMode.Unsigned, Verifier(ExampleTime).Verify(req).Payload);
        Assert.Equal(canonicalUri, SigV4Verifier.CanonicalUriCandidates(key).First());
    }

    [Fact]
    public void PayloadModesAreRecognised()
    {
        foreach (var (value, mode) in new[]
        {
            ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", PayloadMode.StreamingSigned),
            ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", PayloadMode.StreamingSignedTrailer),
            ("STREAMING-UNSIGNED-PAYLOAD-TRAILER", PayloadMode.StreamingUnsignedTrailer),
        })
        {
            (string, string)[] headers = [("Host", "h"), ("x-amz-content-sha256", value), ("x-amz-date", "20130524T000000Z")];
            var auth = Authorization("PUT", "/b/k", "", headers, value, "20130524T000000Z");
            Assert.Equal(mode, Verifier(ExampleTime).Verify(Request("PUT", "/b/k", "", [.. headers, ("Authorization", auth)])).Payload);
        }
    }

    [Fact]
    public void UsersParse()
    {
        var users = S3Users.Parse("AK1:SK1, AK2:S:K2");
        Assert.Equal(2, users.Count);
        Assert.True(users.TryGetSecret("AK2", out var s2));
        Assert.Equal("S:K2", s2);
        Assert.Throws<FormatException>(() => S3Users.Parse(""));
        Assert.Throws<FormatException>(() => S3Users.Parse("AK1"));
        Assert.Throws<FormatException>(() => S3Users.Parse("AK1:a,AK1:b"));
        var (ak, sk) = S3Users.Generate();
        Assert.Equal(20, ak.Length);
        Assert.Equal(40, sk.Length);
    }
}
