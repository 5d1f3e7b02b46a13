namespace NanoKv.S3.SigV4;

/// <summary>What SigV4 verification needs from an HTTP request, independent of the server stack.</summary>
/// <param name="Method">HTTP method, upper case.</param>
/// <param name="RawPath">The path exactly as received (still percent-encoded).</param>
/// <param name="RawQuery">The query string as received, without or with the leading '?'.</param>
/// <param name="Header">Looks a header up by name (case-insensitive); repeated headers joined with ','; null when absent.</param>
public sealed record SigV4Request(string Method, string RawPath, string RawQuery, Func<string, string?> Header);

/// <summary>How the request body is protected, from x-amz-content-sha256 (or presigned: unsigned).</summary>
public enum PayloadMode
{
    /// <summary>UNSIGNED-PAYLOAD: body not covered by the signature (x-amz-checksum-*/Content-MD5 may still apply).</summary>
    Unsigned,
    /// <summary>Hex SHA-256 of the body given up front; verified at end of body.</summary>
    SignedSha256,
    /// <summary>aws-chunked with a chained signature per chunk.</summary>
    StreamingSigned,
    /// <summary>aws-chunked, signed chunks, then a signed trailer carrying x-amz-checksum-*.</summary>
    StreamingSignedTrailer,
    /// <summary>aws-chunked without signatures, trailer carrying x-amz-checksum-*.</summary>
    StreamingUnsignedTrailer,
}

/// <summary>A verified request: who signed it and what the body stream still has to check.</summary>
public sealed record SigV4Auth(
    string AccessKey,
    string AmzDate,
    string Scope,
    byte[] SigningKey,
    string Signature,
    PayloadMode Payload,
    string? PayloadSha256Hex,
    bool Presigned)
{
    public bool IsStreaming => Payload is PayloadMode.StreamingSigned or PayloadMode.StreamingSignedTrailer or PayloadMode.StreamingUnsignedTrailer;
}
