using System.Text;
using System.Xml.Linq;
using NanoKv.S3;
using NanoKv.S3.Xml;

namespace NanoKv.Tests.S3;

/// <summary>S3 XML documents: element names and shapes clients parse, request bodies they send, bucket name rules.</summary>
public sealed class S3XmlTests
{
    private static readonly XNamespace Ns = S3Xml.Namespace;

    private static XElement Parse(byte[] doc)
    {
        Assert.False(doc.AsSpan().StartsWith(Encoding.UTF8.Preamble), "no BOM");
        return XDocument.Parse(Encoding.UTF8.GetString(doc)).Root!;
    }

    [Fact]
    public void ErrorDocumentHasCodeMessageResourceRequestId()
    {
        var e = new S3Exception(S3ErrorCode.NoSuchKey, "The specified key does not exist.") { Details = [new("Key", "a/b")] };
        var root = Parse(S3ErrorDocument.Write(e, "/bucket/a/b", "REQ123"));
        Assert.Equal("Error", root.Name.LocalName);
        Assert.Equal("NoSuchKey", root.Element("Code")!.Value);
        Assert.Equal("The specified key does not exist.", root.Element("Message")!.Value);
        Assert.Equal("a/b", root.Element("Key")!.Value);
        Assert.Equal("/bucket/a/b", root.Element("Resource")!.Value);
        Assert.Equal("REQ123", root.Element("RequestId")!.Value);
        Assert.Equal(404, e.Status);
    }

    [Fact]
    public void ListObjectsV2AndV1()
    {
        var page = new ListObjectsPage
        {
            Bucket = "b",
            Prefix = "dir/",
            Delimiter = "/",
            MaxKeys = 2,
            IsTruncated = true,
            NextContinuationToken = "tok",
            Contents = [new ObjectEntry("dir/a b", new DateTimeOffset(2024, 1, 2, 3, 4, 5, TimeSpan.Zero), "abc", 5, "AK")],
            CommonPrefixes = ["dir/sub/"],
            UrlEncode = true,
            NextMarker = "dir/sub/",
        };
        var v2 = Parse(S3Responses.ListObjectsV2(page));
        Assert.Equal(Ns + "ListBucketResult", v2.Name);
        Assert.Equal("2", v2.Element(Ns + "KeyCount")!.Value);
        Assert.Equal("true", v2.Element(Ns + "IsTruncated")!.Value);
        Assert.Equal("tok", v2.Element(Ns + "NextContinuationToken")!.Value);
        Assert.Equal("url", v2.Element(Ns + "EncodingType")!.Value);
        var c = v2.Element(Ns + "Contents")!;
        Assert.Equal("dir/a%20b", c.Element(Ns + "Key")!.Value);
        Assert.Equal("2024-01-02T03:04:05.000Z", c.Element(Ns + "LastModified")!.Value);
        Assert.Equal("\"abc\"", c.Element(Ns + "ETag")!.Value);
        Assert.Null(c.Element(Ns + "Owner"));
        Assert.Equal("dir/sub/", v2.Element(Ns + "CommonPrefixes")!.Element(Ns + "Prefix")!.Value);

        var v1 = Parse(S3Responses.ListObjectsV1(page));
        Assert.Equal("dir/sub/", v1.Element(Ns + "NextMarker")!.Value);
        Assert.Equal("", v1.Element(Ns + "Marker")!.Value);
        Assert.Equal("AK", v1.Element(Ns + "Contents")!.Element(Ns + "Owner")!.Element(Ns + "ID")!.Value);
    }

    [Fact]
    public void OtherDocuments()
    {
        var buckets = Parse(S3Responses.ListBuckets("AK", [new BucketEntry("b1", DateTimeOffset.UnixEpoch)]));
        Assert.Equal("b1", buckets.Element(Ns + "Buckets")!.Element(Ns + "Bucket")!.Element(Ns + "Name")!.Value);
        Assert.Equal("u1", Parse(S3Responses.InitiateMultipartUpload("b", "k", "u1")).Element(Ns + "UploadId")!.Value);
        Assert.Equal("\"e-2\"", Parse(S3Responses.CompleteMultipartUpload("http://h/b/k", "b", "k", "e-2")).Element(Ns + "ETag")!.Value);
        var parts = Parse(S3Responses.ListParts("b", "k", "u", "AK", 0, 1, 1000, false, [new PartEntry(1, DateTimeOffset.UnixEpoch, "e", 5)]));
        Assert.Equal("1", parts.Element(Ns + "Part")!.Element(Ns + "PartNumber")!.Value);
        var uploads = Parse(S3Responses.ListMultipartUploads("b", "", null, "", "", null, null, 1000, false, [new UploadEntry("k", "u", "AK", DateTimeOffset.UnixEpoch)], []));
        Assert.Equal("u", uploads.Element(Ns + "Upload")!.Element(Ns + "UploadId")!.Value);
        var del = Parse(S3Responses.DeleteResult(["a"], [("b", S3ErrorCode.AccessDenied, "no")]));
        Assert.Equal("a", del.Element(Ns + "Deleted")!.Element(Ns + "Key")!.Value);
        Assert.Equal("AccessDenied", del.Element(Ns + "Error")!.Element(Ns + "Code")!.Value);
        Assert.Equal("\"e\"", Parse(S3Responses.CopyObjectResult(DateTimeOffset.UnixEpoch, "e")).Element(Ns + "ETag")!.Value);
        Assert.Equal("", Parse(S3Responses.LocationConstraint("us-east-1")).Value);
        Assert.Equal("eu-west-1", Parse(S3Responses.LocationConstraint("eu-west-1")).Value);
    }

    private static Task<XElement?> Load(string xml) => S3Requests.LoadAsync(new MemoryStream(Encoding.UTF8.GetBytes(xml)), CancellationToken.None);

    [Fact]
    public async Task RequestBodiesParse()
    {
        var parts = S3Requests.ParseCompleteMultipartUpload(await Load(
            "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Part><ETag>\"aa\"</ETag><PartNumber>1</PartNumber></Part><Part><PartNumber>2</PartNumber><ETag>bb</ETag><ChecksumCRC32>x</ChecksumCRC32></Part></CompleteMultipartUpload>"));
        Assert.Equal([new CompletedPart(1, "aa"), new CompletedPart(2, "bb", "x-amz-checksum-crc32", "x")], parts);

        var del = S3Requests.ParseDelete(await Load("<Delete><Quiet>true</Quiet><Object><Key>a</Key></Object><Object><Key>b&amp;c</Key><VersionId>x</VersionId></Object></Delete>"));
        Assert.True(del.Quiet);
        Assert.Equal(["a", "b&c"], del.Keys);

        Assert.Equal("eu-west-1", S3Requests.ParseCreateBucket(await Load("<CreateBucketConfiguration><LocationConstraint>eu-west-1</LocationConstraint></CreateBucketConfiguration>")));
        Assert.Null(S3Requests.ParseCreateBucket(await Load("")));

        foreach (var bad in new[] { "<Delete>", "<Delete></Delete>", "<!DOCTYPE x [<!ENTITY e \"x\">]><Delete><Object><Key>&e;</Key></Object></Delete>", "<Other/>" })
        {
            Assert.Equal(S3ErrorCode.MalformedXML, (await Assert.ThrowsAsync<S3Exception>(async () => S3Requests.ParseDelete(await Load(bad)))).Code);
        }
        var tooMany = "<Delete>" + string.Concat(Enumerable.Range(0, 1001).Select(i => $"<Object><Key>{i}</Key></Object>")) + "</Delete>";
        Assert.Equal(S3ErrorCode.MalformedXML, Assert.Throws<S3Exception>(() => S3Requests.ParseDelete(XElement.Parse(tooMany))).Code);
    }

    [Theory]
    [InlineData("abc", true)]
    [InlineData("my-bucket.data-01", true)]
    [InlineData("ab", false)]
    [InlineData("Abc", false)]
    [InlineData("-abc", false)]
    [InlineData("abc-", false)]
    [InlineData("a..b", false)]
    [InlineData("192.168.5.4", false)]
    [InlineData("xn--abc", false)]
    [InlineData("abc-s3alias", false)]
    [InlineData("a_b", false)]
    public void BucketNameRules(string name, bool valid)
    {
        Assert.Equal(valid, BucketNames.IsValid(name));
        if (!valid)
        {
            Assert.Equal(S3ErrorCode.InvalidBucketName, Assert.Throws<S3Exception>(() => BucketNames.Validate(name)).Code);
        }
    }
}
