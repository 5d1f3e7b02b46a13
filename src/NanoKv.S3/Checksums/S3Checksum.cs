using System.Buffers.Binary;
using System.IO.Hashing;
using System.Security.Cryptography;

namespace NanoKv.S3.Checksums;

/// <summary>The flexible-checksum algorithms S3 clients send as x-amz-checksum-*.</summary>
public enum ChecksumAlgorithm
{
    Crc32,
    Crc32C,
    Crc64Nvme,
    Sha1,
    Sha256,
}

/// <summary>An incremental checksum whose result is rendered the way S3 headers carry it (base64 of the big-endian value).</summary>
public abstract class S3Checksum : IDisposable
{
    public abstract ChecksumAlgorithm Algorithm { get; }
    public abstract void Append(ReadOnlySpan<byte> data);
    public abstract byte[] GetHash();
    public string GetBase64() => Convert.ToBase64String(GetHash());
    public string HeaderName => ChecksumAlgorithms.HeaderName(Algorithm);
    public virtual void Dispose() => GC.SuppressFinalize(this);

    public static S3Checksum Create(ChecksumAlgorithm algorithm) => algorithm switch
    {
        ChecksumAlgorithm.Crc32 => new Crc32Checksum(),
        ChecksumAlgorithm.Crc32C => new Crc32CChecksum(),
        ChecksumAlgorithm.Crc64Nvme => new Crc64NvmeChecksum(),
        ChecksumAlgorithm.Sha1 => new IncrementalChecksum(algorithm, HashAlgorithmName.SHA1),
        ChecksumAlgorithm.Sha256 => new IncrementalChecksum(algorithm, HashAlgorithmName.SHA256),
        _ => throw new ArgumentOutOfRangeException(nameof(algorithm)),
    };

    private sealed class Crc32Checksum : S3Checksum
    {
        private readonly Crc32 _crc = new();
        public override ChecksumAlgorithm Algorithm => ChecksumAlgorithm.Crc32;
        public override void Append(ReadOnlySpan<byte> data) => _crc.Append(data);

        public override byte[] GetHash()
        {
            var b = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(b, _crc.GetCurrentHashAsUInt32());
            return b;
        }
    }

    private sealed class Crc32CChecksum : S3Checksum
    {
        private uint _state = Crc32C.Initial;
        public override ChecksumAlgorithm Algorithm => ChecksumAlgorithm.Crc32C;
        public override void Append(ReadOnlySpan<byte> data) => _state = Crc32C.Update(_state, data);

        public override byte[] GetHash()
        {
            var b = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(b, Crc32C.Finish(_state));
            return b;
        }
    }

    private sealed class Crc64NvmeChecksum : S3Checksum
    {
        private ulong _state = Crc64Nvme.Initial;
        public override ChecksumAlgorithm Algorithm => ChecksumAlgorithm.Crc64Nvme;
        public override void Append(ReadOnlySpan<byte> data) => _state = Crc64Nvme.Update(_state, data);

        public override byte[] GetHash()
        {
            var b = new byte[8];
            BinaryPrimitives.WriteUInt64BigEndian(b, Crc64Nvme.Finish(_state));
            return b;
        }
    }

    private sealed class IncrementalChecksum(ChecksumAlgorithm algorithm, HashAlgorithmName name) : S3Checksum
    {
        private readonly IncrementalHash _hash = IncrementalHash.CreateHash(name);
        public override ChecksumAlgorithm Algorithm => algorithm;
        public override void Append(ReadOnlySpan<byte> data) => _hash.AppendData(data);
        public override byte[] GetHash() => _hash.GetCurrentHash();

        public override void Dispose()
        {
            _hash.Dispose();
            base.Dispose();
        }
    }
}

/// <summary>Header names and parsing for x-amz-checksum-* and x-amz-sdk-checksum-algorithm.</summary>
public static class ChecksumAlgorithms
{
    public static readonly ChecksumAlgorithm[] All = Enum.GetValues<ChecksumAlgorithm>();

    public static string HeaderName(ChecksumAlgorithm a) => "x-amz-checksum-" + Name(a);

    /// <summary>Lower-case name as used in header suffixes ("crc64nvme").</summary>
    public static string Name(ChecksumAlgorithm a) => a switch
    {
        ChecksumAlgorithm.Crc32 => "crc32",
        ChecksumAlgorithm.Crc32C => "crc32c",
        ChecksumAlgorithm.Crc64Nvme => "crc64nvme",
        ChecksumAlgorithm.Sha1 => "sha1",
        ChecksumAlgorithm.Sha256 => "sha256",
        _ => throw new ArgumentOutOfRangeException(nameof(a)),
    };

    /// <summary>Upper-case name as in x-amz-checksum-algorithm ("CRC64NVME").</summary>
    public static string UpperName(ChecksumAlgorithm a) => Name(a).ToUpperInvariant();

    /// <summary>The XML element S3 uses for the value ("ChecksumSHA256").</summary>
    public static string XmlName(ChecksumAlgorithm a) => "Checksum" + UpperName(a);

    /// <summary>A stored checksum (header name, value) as the XML element and value S3 lists it with; null when there is none.</summary>
    public static (string Element, string Value)? XmlEntry(string? headerName, string? value) =>
        value is not null && TryParse(headerName, out var a) ? (XmlName(a), value) : null;

    /// <summary>
    /// A multipart object's COMPOSITE checksum: the algorithm over the parts' decoded checksums in part order,
    /// base64, then "-" and the part count (S3's checksum-of-checksums).
    /// </summary>
    public static string Composite(ChecksumAlgorithm a, IReadOnlyList<string> partChecksums)
    {
        using var c = S3Checksum.Create(a);
        foreach (var part in partChecksums)
        {
            c.Append(Convert.FromBase64String(part));
        }
        return c.GetBase64() + "-" + partChecksums.Count.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Parses "crc32", "CRC32C", "x-amz-checksum-sha256" and the like.</summary>
    public static bool TryParse(string? value, out ChecksumAlgorithm algorithm)
    {
        algorithm = default;
        if (value is null)
        {
            return false;
        }
        var v = value.Trim().ToLowerInvariant();
        if (v.StartsWith("x-amz-checksum-", StringComparison.Ordinal))
        {
            v = v["x-amz-checksum-".Length..];
        }
        foreach (var a in All)
        {
            if (Name(a) == v)
            {
                algorithm = a;
                return true;
            }
        }
        return false;
    }
}
