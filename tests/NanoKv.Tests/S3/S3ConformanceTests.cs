using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Xml.Linq;

namespace NanoKv.Tests.S3;

/// <summary>
/// Status codes, headers and XML fields as the ceph s3-tests suite expects them (test names in the comments), through raw
/// signed HTTP so nothing an SDK smooths over goes unseen. docs/s3.md lists what was checked.
/// </summary>
public sealed class S3ConformanceTests(S3ClusterFixture fx) : IClassFixture<S3ClusterFixture>
{
    private readonly RawS3 _s3 = new(fx.S3Url);

    private async Task<string> BucketAsync(string name, params string[] keys)
    {
        var bucket = S3ClusterFixture.Bucket(name);
        Assert.Equal(HttpStatusCode.OK, (await _s3.SendAsync(HttpMethod.Put, "/" + bucket, [])).Status);
        foreach (var k in keys)
        {
            var put = await _s3.SendAsync(HttpMethod.Put, $"/{bucket}/{Uri.EscapeDataString(k)}", Encoding.UTF8.GetBytes(k));
            Assert.True(put.Status == HttpStatusCode.OK, $"{k}: {put.Body}");
        }
        return bucket;
    }

    private static XElement Xml(RawS3.Answer a) => XDocument.Parse(a.Body, LoadOptions.PreserveWhitespace).Root!;

    private static string? El(XElement e, string name) => e.Elements().FirstOrDefault(c => c.Name.LocalName == name)?.Value;

    private static IEnumerable<XElement> All(XElement e, string name) => e.Elements().Where(c => c.Name.LocalName == name);

    /// <summary>Status and S3 error code; RequestId in the body equals the x-amz-request-id header (test_object_requestid_matches_header_on_error).</summary>
    private static void AssertError(RawS3.Answer a, HttpStatusCode status, string code)
    {
        Assert.True(a.Status == status, $"expected {(int)status} {code}, got {(int)a.Status} {a.Body}");
        var root = Xml(a);
        Assert.Equal("Error", root.Name.LocalName);
        Assert.Equal(code, El(root, "Code"));
        Assert.Equal(a.Headers["x-amz-request-id"], El(root, "RequestId"));
        Assert.StartsWith("application/xml", a.Headers["Content-Type"], StringComparison.Ordinal);
    }

    [Fact]
    public async Task BucketNamesFollowTheDnsRules()
    {
        // test_bucket_create_naming_bad_* / _dns_*: 400 InvalidBucketName.
        foreach (var bad in new[] { "a", "aa", new string('a', 64), "192.168.5.123", "foo_bar", "foo-", "-foo", "foo..bar", "foo.-bar", "foo-.bar", "Foo", "alpha!soup" })
        {
            AssertError(await _s3.SendAsync(HttpMethod.Put, "/" + Uri.EscapeDataString(bad), []), HttpStatusCode.BadRequest, "InvalidBucketName");
        }
        // test_bucket_create_naming_bad_short_empty: a PUT to the service is 405 MethodNotAllowed.
        AssertError(await _s3.SendAsync(HttpMethod.Put, "/", []), HttpStatusCode.MethodNotAllowed, "MethodNotAllowed");
        // test_bucket_create_naming_good_long_63 and _dns_long.
        var longest = ("long-" + Guid.NewGuid().ToString("N") + new string('x', 63))[..63];
        Assert.Equal(HttpStatusCode.OK, (await _s3.SendAsync(HttpMethod.Put, "/" + longest, [])).Status);
        // test_bucket_create_exists: 409 BucketAlreadyOwnedByYou; another user: 409 BucketAlreadyExists.
        AssertError(await _s3.SendAsync(HttpMethod.Put, "/" + longest, []), HttpStatusCode.Conflict, "BucketAlreadyOwnedByYou");
        var bob = new RawS3(fx.S3Url, S3ClusterFixture.Ak2, S3ClusterFixture.Sk2);
        AssertError(await bob.SendAsync(HttpMethod.Put, "/" + longest, []), HttpStatusCode.Conflict, "BucketAlreadyExists");
        // test_bucket_get_location: us-east-1 answers an empty LocationConstraint.
        var location = await _s3.SendAsync(HttpMethod.Get, $"/{longest}?location");
        Assert.Equal("", Xml(location).Value);
    }

    [Fact]
    public async Task MissingBucketKeyAndUploadAre404WithTheirCodes()
    {
        var bucket = await BucketAsync("missing");
        var nobucket = S3ClusterFixture.Bucket("nobucket");
        // test_bucket_notexist, test_bucket_delete_notexist, test_object_write_to_nonexist_bucket, test_object_read_not_exist.
        AssertError(await _s3.SendAsync(HttpMethod.Get, $"/{nobucket}?list-type=2"), HttpStatusCode.NotFound, "NoSuchBucket");
        AssertError(await _s3.SendAsync(HttpMethod.Delete, $"/{nobucket}"), HttpStatusCode.NotFound, "NoSuchBucket");
        AssertError(await _s3.SendAsync(HttpMethod.Put, $"/{nobucket}/k", "x"u8.ToArray()), HttpStatusCode.NotFound, "NoSuchBucket");
        AssertError(await _s3.SendAsync(HttpMethod.Delete, $"/{nobucket}/k"), HttpStatusCode.NotFound, "NoSuchBucket");
        AssertError(await _s3.SendAsync(HttpMethod.Get, $"/{bucket}/nope"), HttpStatusCode.NotFound, "NoSuchKey");
        var head = await _s3.SendAsync(HttpMethod.Head, $"/{bucket}/nope");
        Assert.Equal(HttpStatusCode.NotFound, head.Status);
        Assert.Equal("", head.Body);
        // test_abort_multipart_upload_not_found, ListParts and UploadPart of an unknown upload.
        AssertError(await _s3.SendAsync(HttpMethod.Delete, $"/{bucket}/k?uploadId=nosuchupload"), HttpStatusCode.NotFound, "NoSuchUpload");
        AssertError(await _s3.SendAsync(HttpMethod.Get, $"/{bucket}/k?uploadId=nosuchupload"), HttpStatusCode.NotFound, "NoSuchUpload");
        AssertError(await _s3.SendAsync(HttpMethod.Put, $"/{bucket}/k?partNumber=1&uploadId=nosuchupload", "x"u8.ToArray()), HttpStatusCode.NotFound, "NoSuchUpload");
        // test_object_delete_key_bucket_gone is NoSuchBucket; deleting a key that is not there is 204 (test_object_delete_key... / DeleteObject idempotent).
        Assert.Equal(HttpStatusCode.NoContent, (await _s3.SendAsync(HttpMethod.Delete, $"/{bucket}/never-was")).Status);
        // test_bucket_delete_nonempty.
        await _s3.SendAsync(HttpMethod.Put, $"/{bucket}/x", "x"u8.ToArray());
        AssertError(await _s3.SendAsync(HttpMethod.Delete, $"/{bucket}"), HttpStatusCode.Conflict, "BucketNotEmpty");
        // Another user's bucket: 403 AccessDenied.
        var bob = new RawS3(fx.S3Url, S3ClusterFixture.Ak2, S3ClusterFixture.Sk2);
        AssertError(await bob.SendAsync(HttpMethod.Get, $"/{bucket}?list-type=2"), HttpStatusCode.Forbidden, "AccessDenied");
    }

    [Fact]
    public async Task RangesAnswer206Or416()
    {
        var bucket = await BucketAsync("ranges");
        await _s3.SendAsync(HttpMethod.Put, $"/{bucket}/obj", "testcontent"u8.ToArray());
        await _s3.SendAsync(HttpMethod.Put, $"/{bucket}/empty", []);
        // test_ranged_request_response_code, _skip_leading_bytes_, _return_trailing_bytes_.
        foreach (var (range, body, contentRange) in new[] { ("bytes=4-7", "cont", "bytes 4-7/11"), ("bytes=4-", "content", "bytes 4-10/11"), ("bytes=-7", "content", "bytes 4-10/11"), ("bytes=4-100", "content", "bytes 4-10/11") })
        {
            var r = await _s3.SendAsync(HttpMethod.Get, $"/{bucket}/obj", headers: [("Range", range)]);
            Assert.Equal((HttpStatusCode.PartialContent, body, contentRange), (r.Status, r.Body, r.Headers["Content-Range"]));
        }
        // test_ranged_request_invalid_range, test_ranged_request_empty_object: 416 InvalidRange.
        var invalid = await _s3.SendAsync(HttpMethod.Get, $"/{bucket}/obj", headers: [("Range", "bytes=40-50")]);
        AssertError(invalid, HttpStatusCode.RequestedRangeNotSatisfiable, "InvalidRange");
        Assert.Equal("bytes */11", invalid.Headers["Content-Range"]);
        AssertError(await _s3.SendAsync(HttpMethod.Get, $"/{bucket}/empty", headers: [("Range", "bytes=40-50")]), HttpStatusCode.RequestedRangeNotSatisfiable, "InvalidRange");
    }

    [Fact]
    public async Task ListingEdgeCases()
    {
        var bucket = await BucketAsync("listing", "bar", "baz", "foo", "quxx", "foo+1/bar", "quux ab/thud", "asdf+b");
        foreach (var v in new[] { "list-type=2&", "" })
        {
            // test_bucket_list(v2)_maxkeys_zero: empty and complete.
            var zero = Xml(await _s3.SendAsync(HttpMethod.Get, $"/{bucket}?{v}max-keys=0"));
            Assert.Equal("false", El(zero, "IsTruncated"));
            Assert.Empty(All(zero, "Contents"));
            Assert.Equal("0", El(zero, "MaxKeys"));
            // test_bucket_list_maxkeys_invalid: 400 InvalidArgument.
            AssertError(await _s3.SendAsync(HttpMethod.Get, $"/{bucket}?{v}max-keys=blah"), HttpStatusCode.BadRequest, "InvalidArgument");
            // test_bucket_list(v2)_delimiter_empty / _none: no Delimiter element, every key.
            var empty = Xml(await _s3.SendAsync(HttpMethod.Get, $"/{bucket}?{v}delimiter="));
            Assert.Null(El(empty, "Delimiter"));
            Assert.Equal(7, All(empty, "Contents").Count());
            // test_bucket_list(v2)_delimiter_unreadable: echoed, nothing grouped.
            var nl = Xml(await _s3.SendAsync(HttpMethod.Get, $"/{bucket}?{v}delimiter=%0A"));
            Assert.Equal("\n", El(nl, "Delimiter"));
            Assert.Empty(All(nl, "CommonPrefixes"));
            // test_bucket_list(v2)_encoding_basic: keys and prefixes percent-encoded, '/' kept.
            var enc = Xml(await _s3.SendAsync(HttpMethod.Get, $"/{bucket}?{v}delimiter=%2F&encoding-type=url"));
            Assert.Equal("url", El(enc, "EncodingType"));
            Assert.Equal(["foo%2B1/", "quux%20ab/"], All(enc, "CommonPrefixes").Select(p => El(p, "Prefix")));
            Assert.Contains("asdf%2Bb", All(enc, "Contents").Select(c => El(c, "Key")));
            // Bad encoding type: 400 InvalidArgument.
            AssertError(await _s3.SendAsync(HttpMethod.Get, $"/{bucket}?{v}encoding-type=base64"), HttpStatusCode.BadRequest, "InvalidArgument");
        }
        // test_basic_key_count / test_bucket_listv2_delimiter_basic: KeyCount = keys + prefixes.
        var v2 = Xml(await _s3.SendAsync(HttpMethod.Get, $"/{bucket}?list-type=2&delimiter=%2F&max-keys=3"));
        Assert.Equal("3", El(v2, "KeyCount"));
        Assert.Equal("true", El(v2, "IsTruncated"));
        Assert.NotNull(El(v2, "NextContinuationToken"));
        // test_bucket_listv2_fetchowner_defaultempty: no Owner unless fetch-owner=true; v1 always has it (test_bucket_list_return_data).
        Assert.All(All(v2, "Contents"), c => Assert.Null(El(c, "Owner")));
        var v1 = Xml(await _s3.SendAsync(HttpMethod.Get, $"/{bucket}?max-keys=2"));
        Assert.All(All(v1, "Contents"), c => Assert.Equal(S3ClusterFixture.Ak1, El(c.Elements().Single(e => e.Name.LocalName == "Owner"), "ID")));
        Assert.Equal("", El(v1, "Marker")); // test_bucket_list_marker_none
        // test_bucket_list_marker_after_list / test_bucket_listv2_startafter_after_list: empty, complete, marker echoed.
        var after = Xml(await _s3.SendAsync(HttpMethod.Get, $"/{bucket}?marker=zzz"));
        Assert.Equal(("zzz", "false"), (El(after, "Marker"), El(after, "IsTruncated")));
        Assert.Empty(All(after, "Contents"));
        var startAfter = Xml(await _s3.SendAsync(HttpMethod.Get, $"/{bucket}?list-type=2&start-after=zzz"));
        Assert.Equal(("zzz", "false", "0"), (El(startAfter, "StartAfter"), El(startAfter, "IsTruncated"), El(startAfter, "KeyCount")));
        // test_bucket_list_marker_not_in_list: keys after the marker.
        var notIn = Xml(await _s3.SendAsync(HttpMethod.Get, $"/{bucket}?marker=blah"));
        Assert.Equal(["foo", "foo+1/bar", "quux ab/thud", "quxx"], All(notIn, "Contents").Select(c => El(c, "Key")));
        // test_bucket_list_delimiter_prefix: v1 NextMarker is the last key or prefix of a truncated page.
        var page = Xml(await _s3.SendAsync(HttpMethod.Get, $"/{bucket}?delimiter=%2F&max-keys=5"));
        Assert.Equal(("true", "foo+1/"), (El(page, "IsTruncated"), El(page, "NextMarker")));
        // test_bucket_list_prefix_*: the prefix echoed; ETag quoted; LastModified ISO 8601 with milliseconds.
        var prefixed = Xml(await _s3.SendAsync(HttpMethod.Get, $"/{bucket}?list-type=2&prefix=ba"));
        Assert.Equal("ba", El(prefixed, "Prefix"));
        var first = All(prefixed, "Contents").First();
        Assert.Equal($"\"{Convert.ToHexStringLower(MD5.HashData("bar"u8))}\"", El(first, "ETag"));
        Assert.Matches(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", El(first, "LastModified"));
        Assert.Equal(("3", "STANDARD"), (El(first, "Size"), El(first, "StorageClass")));
    }

    [Fact]
    public async Task DeleteObjectsReportsEveryKeyAndQuietModeOnlyErrors()
    {
        var bucket = await BucketAsync("multidel", "key0", "key1");
        // test_multi_object_delete: existing and missing keys are all "Deleted"; a second run too.
        var body = "<Delete><Object><Key>key0</Key></Object><Object><Key>key1</Key></Object><Object><Key>key2</Key></Object></Delete>"u8.ToArray();
        for (var run = 0; run < 2; run++)
        {
            var r = await _s3.SendAsync(HttpMethod.Post, $"/{bucket}?delete", body, headers: [("Content-MD5", Convert.ToBase64String(MD5.HashData(body)))]);
            Assert.Equal(HttpStatusCode.OK, r.Status);
            Assert.Equal(["key0", "key1", "key2"], All(Xml(r), "Deleted").Select(d => El(d, "Key")));
        }
        var quiet = "<Delete><Quiet>true</Quiet><Object><Key>key0</Key></Object></Delete>"u8.ToArray();
        var q = await _s3.SendAsync(HttpMethod.Post, $"/{bucket}?delete", quiet, headers: [("Content-MD5", Convert.ToBase64String(MD5.HashData(quiet)))]);
        Assert.Empty(Xml(q).Elements());
        // More than 1000 keys: 400 MalformedXML.
        var tooMany = Encoding.UTF8.GetBytes("<Delete>" + string.Concat(Enumerable.Range(0, 1001).Select(i => $"<Object><Key>k{i}</Key></Object>")) + "</Delete>");
        AssertError(await _s3.SendAsync(HttpMethod.Post, $"/{bucket}?delete", tooMany, headers: [("Content-MD5", Convert.ToBase64String(MD5.HashData(tooMany)))]),
            HttpStatusCode.BadRequest, "MalformedXML");
    }

    [Fact]
    public async Task CopyRules()
    {
        var bucket = await BucketAsync("copy");
        await _s3.SendAsync(HttpMethod.Put, $"/{bucket}/foo123bar", "foo"u8.ToArray(), headers: [("Content-Type", "text/bla"), ("x-amz-meta-key1", "value1")]);
        // test_object_copy_to_itself: 400 InvalidRequest; with REPLACE (test_object_copy_to_itself_with_metadata) it works.
        AssertError(await _s3.SendAsync(HttpMethod.Put, $"/{bucket}/foo123bar", headers: [("x-amz-copy-source", $"{bucket}/foo123bar")]), HttpStatusCode.BadRequest, "InvalidRequest");
        var replaced = await _s3.SendAsync(HttpMethod.Put, $"/{bucket}/foo123bar", headers: [("x-amz-copy-source", $"{bucket}/foo123bar"), ("x-amz-metadata-directive", "REPLACE"), ("x-amz-meta-foo", "bar")]);
        Assert.Equal(HttpStatusCode.OK, replaced.Status);
        Assert.Equal("CopyObjectResult", Xml(replaced).Name.LocalName);
        Assert.Equal("bar", (await _s3.SendAsync(HttpMethod.Head, $"/{bucket}/foo123bar")).Headers["x-amz-meta-foo"]);
        // test_object_copy_verify_contenttype / _retaining_metadata: COPY keeps Content-Type and metadata.
        await _s3.SendAsync(HttpMethod.Put, $"/{bucket}/src", "foo"u8.ToArray(), headers: [("Content-Type", "text/bla"), ("x-amz-meta-key1", "value1")]);
        Assert.Equal(HttpStatusCode.OK, (await _s3.SendAsync(HttpMethod.Put, $"/{bucket}/dst", headers: [("x-amz-copy-source", $"/{bucket}/src")])).Status);
        var dst = await _s3.SendAsync(HttpMethod.Get, $"/{bucket}/dst");
        Assert.Equal(("foo", "text/bla", "value1"), (dst.Body, dst.Headers["Content-Type"], dst.Headers["x-amz-meta-key1"]));
        // test_object_copy_zero_size.
        await _s3.SendAsync(HttpMethod.Put, $"/{bucket}/zero", []);
        Assert.Equal(HttpStatusCode.OK, (await _s3.SendAsync(HttpMethod.Put, $"/{bucket}/zero-copy", headers: [("x-amz-copy-source", $"{bucket}/zero")])).Status);
        Assert.Equal("0", (await _s3.SendAsync(HttpMethod.Head, $"/{bucket}/zero-copy")).Headers["Content-Length"]);
        // test_object_copy_key_not_found / _bucket_not_found.
        AssertError(await _s3.SendAsync(HttpMethod.Put, $"/{bucket}/x", headers: [("x-amz-copy-source", $"{bucket}/nope")]), HttpStatusCode.NotFound, "NoSuchKey");
        AssertError(await _s3.SendAsync(HttpMethod.Put, $"/{bucket}/x", headers: [("x-amz-copy-source", $"{S3ClusterFixture.Bucket("gone")}/nope")]), HttpStatusCode.NotFound, "NoSuchBucket");
    }

    [Fact]
    public async Task ConditionalGetAndHeadPrecedence()
    {
        var bucket = await BucketAsync("cond");
        var put = await _s3.SendAsync(HttpMethod.Put, $"/{bucket}/foo", "bar"u8.ToArray());
        var etag = put.Headers["ETag"];
        Assert.Equal($"\"{Convert.ToHexStringLower(MD5.HashData("bar"u8))}\"", etag); // test_object_write_check_etag
        var past = "Sat, 29 Oct 1994 19:43:31 GMT";
        var future = DateTimeOffset.UtcNow.AddDays(1).ToString("r", CultureInfo.InvariantCulture);
        foreach (var method in new[] { HttpMethod.Get, HttpMethod.Head })
        {
            async Task<HttpStatusCode> Status(params (string, string)[] h) => (await _s3.SendAsync(method, $"/{bucket}/foo", headers: h)).Status;
            // test_get_object_ifmatch_good/_failed.
            Assert.Equal(HttpStatusCode.OK, await Status(("If-Match", etag)));
            Assert.Equal(HttpStatusCode.PreconditionFailed, await Status(("If-Match", "\"ABCORZ\"")));
            // test_get_object_ifnonematch_good (304) / _failed (200).
            Assert.Equal(HttpStatusCode.NotModified, await Status(("If-None-Match", etag)));
            Assert.Equal(HttpStatusCode.OK, await Status(("If-None-Match", "ABCORZ")));
            // test_get_object_ifmodifiedsince_good (200) / _failed (304).
            Assert.Equal(HttpStatusCode.OK, await Status(("If-Modified-Since", past)));
            Assert.Equal(HttpStatusCode.NotModified, await Status(("If-Modified-Since", future)));
            // test_get_object_ifunmodifiedsince_good (412) / _failed (200).
            Assert.Equal(HttpStatusCode.PreconditionFailed, await Status(("If-Unmodified-Since", past)));
            Assert.Equal(HttpStatusCode.OK, await Status(("If-Unmodified-Since", future)));
            // RFC 7232 §6 as S3 documents it: If-Match true wins over If-Unmodified-Since false; If-None-Match false wins over If-Modified-Since true.
            Assert.Equal(HttpStatusCode.OK, await Status(("If-Match", etag), ("If-Unmodified-Since", past)));
            Assert.Equal(HttpStatusCode.NotModified, await Status(("If-None-Match", etag), ("If-Modified-Since", past)));
            Assert.Equal(HttpStatusCode.OK, await Status(("If-None-Match", "\"other\""), ("If-Modified-Since", future)));
        }
        // 304 carries the ETag and Last-Modified and no body; a failed If-Match is a PreconditionFailed document.
        var notModified = await _s3.SendAsync(HttpMethod.Get, $"/{bucket}/foo", headers: [("If-None-Match", etag)]);
        Assert.Equal((etag, ""), (notModified.Headers["ETag"], notModified.Body));
        Assert.True(notModified.Headers.ContainsKey("Last-Modified"));
        AssertError(await _s3.SendAsync(HttpMethod.Get, $"/{bucket}/foo", headers: [("If-Match", "\"ABCORZ\"")]), HttpStatusCode.PreconditionFailed, "PreconditionFailed");
    }

    [Fact]
    public async Task ConditionalPuts()
    {
        var bucket = await BucketAsync("condput");
        // test_put_object_ifnonmatch_nonexisted_good / _ifnonmatch_overwrite_existed_failed.
        Assert.Equal(HttpStatusCode.OK, (await _s3.SendAsync(HttpMethod.Put, $"/{bucket}/foo", "bar"u8.ToArray(), headers: [("If-None-Match", "*")])).Status);
        AssertError(await _s3.SendAsync(HttpMethod.Put, $"/{bucket}/foo", "zar"u8.ToArray(), headers: [("If-None-Match", "*")]), HttpStatusCode.PreconditionFailed, "PreconditionFailed");
        // test_put_object_ifmatch_good / _failed.
        var etag = (await _s3.SendAsync(HttpMethod.Head, $"/{bucket}/foo")).Headers["ETag"];
        AssertError(await _s3.SendAsync(HttpMethod.Put, $"/{bucket}/foo", "zar"u8.ToArray(), headers: [("If-Match", "\"ABCORZ\"")]), HttpStatusCode.PreconditionFailed, "PreconditionFailed");
        Assert.Equal(HttpStatusCode.OK, (await _s3.SendAsync(HttpMethod.Put, $"/{bucket}/foo", "zar"u8.ToArray(), headers: [("If-Match", etag)])).Status);
        // test_put_object_ifmatch_overwrite_existed_good: If-Match: * overwrites an existing object.
        Assert.Equal(HttpStatusCode.OK, (await _s3.SendAsync(HttpMethod.Put, $"/{bucket}/foo", "war"u8.ToArray(), headers: [("If-Match", "*")])).Status);
        Assert.Equal("war", (await _s3.SendAsync(HttpMethod.Get, $"/{bucket}/foo")).Body);
        // If-Match on a missing key: AWS answers 404 NoSuchKey (ceph's test_put_object_ifmatch_nonexisted_failed, marked fails_on_aws, wants 412); nothing is written either way.
        AssertError(await _s3.SendAsync(HttpMethod.Put, $"/{bucket}/none", "bar"u8.ToArray(), headers: [("If-Match", "*")]), HttpStatusCode.NotFound, "NoSuchKey");
        Assert.Equal(HttpStatusCode.NotFound, (await _s3.SendAsync(HttpMethod.Head, $"/{bucket}/none")).Status);
    }

    [Fact]
    public async Task HeadersOfPutGetAndHead()
    {
        var bucket = await BucketAsync("headers");
        // x-amz-meta-* names come back lower-cased (S3 stores them so); empty values survive (test_object_set_get_metadata_none_to_empty).
        var put = await _s3.SendAsync(HttpMethod.Put, $"/{bucket}/obj", "hello"u8.ToArray(),
            headers: [("x-amz-meta-MixedCase", "Value"), ("x-amz-meta-empty", ""), ("Cache-Control", "no-cache"), ("Expires", "Thu, 01 Dec 1994 16:00:00 GMT")]);
        Assert.Equal(HttpStatusCode.OK, put.Status);
        foreach (var method in new[] { HttpMethod.Get, HttpMethod.Head })
        {
            var r = await _s3.SendAsync(method, $"/{bucket}/obj");
            Assert.Equal(HttpStatusCode.OK, r.Status);
            // test_object_head_zero_bytes and friends: HEAD carries the object's Content-Length.
            Assert.Equal("5", r.Headers["Content-Length"]);
            Assert.Equal("Value", r.Headers["x-amz-meta-mixedcase"]);
            Assert.Contains("x-amz-meta-mixedcase", r.Headers.Keys); // the dictionary is case-insensitive; the wire name is checked below
            Assert.Equal("", r.Headers["x-amz-meta-empty"]);
            Assert.Equal("no-cache", r.Headers["Cache-Control"]);
            Assert.Equal("Thu, 01 Dec 1994 16:00:00 GMT", r.Headers["Expires"]);
            Assert.Equal(put.Headers["ETag"], r.Headers["ETag"]);
            Assert.Matches("^\"[0-9a-f]{32}\"$", r.Headers["ETag"]);
            // Last-Modified: RFC 1123 in GMT.
            Assert.True(DateTimeOffset.TryParseExact(r.Headers["Last-Modified"], "r", CultureInfo.InvariantCulture, DateTimeStyles.None, out _), r.Headers["Last-Modified"]);
            Assert.Equal("bytes", r.Headers["Accept-Ranges"]);
            Assert.Equal(method == HttpMethod.Get ? "hello" : "", r.Body);
        }
        Assert.Contains("x-amz-meta-mixedcase", await RawHeaderNamesAsync($"/{bucket}/obj"));
        // test_object_head_zero_bytes.
        await _s3.SendAsync(HttpMethod.Put, $"/{bucket}/zero", []);
        Assert.Equal("0", (await _s3.SendAsync(HttpMethod.Head, $"/{bucket}/zero")).Headers["Content-Length"]);
        // test_object_metadata_replaced_on_put: an overwrite replaces the metadata.
        await _s3.SendAsync(HttpMethod.Put, $"/{bucket}/obj", "again"u8.ToArray(), headers: [("x-amz-meta-other", "1")]);
        var after = await _s3.SendAsync(HttpMethod.Head, $"/{bucket}/obj");
        Assert.False(after.Headers.ContainsKey("x-amz-meta-mixedcase"));
        Assert.Equal("1", after.Headers["x-amz-meta-other"]);
    }

    /// <summary>Header names exactly as they came over the wire (HttpClient keeps the server's spelling).</summary>
    private async Task<List<string>> RawHeaderNamesAsync(string path) => [.. (await _s3.SendAsync(HttpMethod.Head, path)).Headers.Keys];

    [Fact]
    public async Task MultipartEdgeCases()
    {
        var bucket = await BucketAsync("mpedge");
        var init = await _s3.SendAsync(HttpMethod.Post, $"/{bucket}/obj?uploads");
        var uploadId = El(Xml(init), "UploadId")!;
        // test_multipart_upload_empty: completing with no parts is 400 MalformedXML.
        AssertError(await _s3.SendAsync(HttpMethod.Post, $"/{bucket}/obj?uploadId={Uri.EscapeDataString(uploadId)}", "<CompleteMultipartUpload></CompleteMultipartUpload>"u8.ToArray()),
            HttpStatusCode.BadRequest, "MalformedXML");
        // test_multipart_upload_missing_part / _incorrect_etag: 400 InvalidPart.
        var part = await _s3.SendAsync(HttpMethod.Put, $"/{bucket}/obj?partNumber=1&uploadId={Uri.EscapeDataString(uploadId)}", "small"u8.ToArray());
        Assert.Equal(HttpStatusCode.OK, part.Status);
        AssertError(await _s3.SendAsync(HttpMethod.Post, $"/{bucket}/obj?uploadId={Uri.EscapeDataString(uploadId)}",
            "<CompleteMultipartUpload><Part><PartNumber>9999</PartNumber><ETag>\"bb\"</ETag></Part></CompleteMultipartUpload>"u8.ToArray()), HttpStatusCode.BadRequest, "InvalidPart");
        AssertError(await _s3.SendAsync(HttpMethod.Post, $"/{bucket}/obj?uploadId={Uri.EscapeDataString(uploadId)}",
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"93b885adfe0da089cdf634904fd59f71\"</ETag></Part></CompleteMultipartUpload>"u8.ToArray()), HttpStatusCode.BadRequest, "InvalidPart");
        // test_multipart_upload_small: one small part completes (the last part has no minimum).
        var done = await _s3.SendAsync(HttpMethod.Post, $"/{bucket}/obj?uploadId={Uri.EscapeDataString(uploadId)}",
            Encoding.UTF8.GetBytes($"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{part.Headers["ETag"]}</ETag></Part></CompleteMultipartUpload>"));
        Assert.Equal(HttpStatusCode.OK, done.Status);
        Assert.EndsWith("-1\"", El(Xml(done), "ETag"), StringComparison.Ordinal);
        Assert.Equal("small", (await _s3.SendAsync(HttpMethod.Get, $"/{bucket}/obj")).Body);
        // The upload is gone once completed.
        AssertError(await _s3.SendAsync(HttpMethod.Delete, $"/{bucket}/obj?uploadId={Uri.EscapeDataString(uploadId)}"), HttpStatusCode.NotFound, "NoSuchUpload");
        // test_multipart_upload_small / test_multipart_upload complete twice: the repeat (a retry whose answer was lost)
        // answers as the first did; a part list that does not make the object in place is still NoSuchUpload.
        var again = await _s3.SendAsync(HttpMethod.Post, $"/{bucket}/obj?uploadId={Uri.EscapeDataString(uploadId)}",
            Encoding.UTF8.GetBytes($"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{part.Headers["ETag"]}</ETag></Part></CompleteMultipartUpload>"));
        Assert.Equal(HttpStatusCode.OK, again.Status);
        Assert.Equal(El(Xml(done), "ETag"), El(Xml(again), "ETag"));
        AssertError(await _s3.SendAsync(HttpMethod.Post, $"/{bucket}/obj?uploadId={Uri.EscapeDataString(uploadId)}",
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"93b885adfe0da089cdf634904fd59f71\"</ETag></Part></CompleteMultipartUpload>"u8.ToArray()), HttpStatusCode.NotFound, "NoSuchUpload");
        // test_multipart_copy_invalid_range: a copy-source range past the end of the source is 416 InvalidRange, not clamped.
        var copyUpload = El(Xml(await _s3.SendAsync(HttpMethod.Post, $"/{bucket}/copied?uploads")), "UploadId")!;
        AssertError(await _s3.SendAsync(HttpMethod.Put, $"/{bucket}/copied?partNumber=1&uploadId={Uri.EscapeDataString(copyUpload)}", [],
            headers: [("x-amz-copy-source", $"/{bucket}/obj"), ("x-amz-copy-source-range", "bytes=0-21")]), HttpStatusCode.RequestedRangeNotSatisfiable, "InvalidRange");
    }

    [Fact]
    public async Task ErrorsBeforeTheBodyCloseAnExpectContinueConnection()
    {
        // test_put_object_ifmatch_failed / _ifnonmatch_overwrite_existed_failed: botocore sends Expect: 100-continue and holds
        // the body back after a final 412; the connection must close, or its next request is read as that body (a 400).
        var bucket = await BucketAsync("expect", "foo");
        var failed = await _s3.SendAsync(HttpMethod.Put, $"/{bucket}/foo", "zar"u8.ToArray(), headers: [("If-None-Match", "*"), ("Expect", "100-continue")]);
        AssertError(failed, HttpStatusCode.PreconditionFailed, "PreconditionFailed");
        Assert.Equal("close", failed.Headers["Connection"]);
        Assert.Equal("foo", (await _s3.SendAsync(HttpMethod.Get, $"/{bucket}/foo")).Body);
        // A request without the expectation keeps its connection.
        Assert.False((await _s3.SendAsync(HttpMethod.Get, $"/{bucket}/nope")).Headers.ContainsKey("Connection"));
    }

    [Fact]
    public async Task OptionsIsAPreflightWithoutCors()
    {
        // test_object_raw_get_x_amz_expires_not_expired: OPTIONS on a presigned URL is 400 (no Origin), as S3 answers a
        // CORS preflight on a bucket without CORS rules; with an Origin it is 403 CORSResponse. Never a signature error.
        var bucket = await BucketAsync("preflight", "foo");
        AssertError(await _s3.SendAsync(HttpMethod.Options, $"/{bucket}/foo"), HttpStatusCode.BadRequest, "BadRequest");
        AssertError(await _s3.SendAsync(HttpMethod.Options, $"/{bucket}/foo", headers: [("Origin", "https://example.org")]), HttpStatusCode.Forbidden, "CORSResponse");
    }

    [Fact]
    public async Task NonAsciiHeaderValuesGoOutRfc2047Encoded()
    {
        // test_object_set_get_unicode_metadata sends a non-ASCII value; writing it raw failed the whole GET with a 500.
        // Such values go out RFC 2047-encoded, as S3 answers (shown through a response-* override, which HttpClient can send).
        var bucket = await BucketAsync("unicode", "obj");
        var r = await _s3.SendAsync(HttpMethod.Get, $"/{bucket}/obj?response-content-disposition={Uri.EscapeDataString("attachment; filename=\"é.txt\"")}");
        Assert.Equal(HttpStatusCode.OK, r.Status);
        Assert.Equal("=?UTF-8?B?" + Convert.ToBase64String(Encoding.UTF8.GetBytes("attachment; filename=\"é.txt\"")) + "?=", r.Headers["Content-Disposition"]);
        Assert.Equal("obj", r.Body);
    }
}
