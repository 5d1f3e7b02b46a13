using System.Buffers.Binary;

namespace NanoKv.S3.Checksums;

/// <summary>CRC-64/NVME (reflected polynomial 0x9A6C9329AC4BC9B5, init and xorout all ones), slice-by-8.
/// System.IO.Hashing's Crc64 is the ECMA-182 polynomial, which S3's CRC64NVME is not.</summary>
public static class Crc64Nvme
{
    public const ulong Initial = ulong.MaxValue;
    private const ulong Polynomial = 0x9A6C9329AC4BC9B5;
    private static readonly ulong[] Table = BuildTable();

    private static ulong[] BuildTable()
    {
        var t = new ulong[8 * 256];
        for (var i = 0; i < 256; i++)
        {
            var crc = (ulong)i;
            for (var k = 0; k < 8; k++)
            {
                crc = (crc & 1) != 0 ? (crc >> 1) ^ Polynomial : crc >> 1;
            }
            t[i] = crc;
        }
        for (var i = 0; i < 256; i++)
        {
            for (var s = 1; s < 8; s++)
            {
                var prev = t[((s - 1) * 256) + i];
                t[(s * 256) + i] = (prev >> 8) ^ t[(int)(prev & 0xFF)];
            }
        }
        return t;
    }

    public static ulong Update(ulong state, ReadOnlySpan<byte> data)
    {
        var t = Table;
        var crc = state;
        while (data.Length >= 8)
        {
            crc ^= BinaryPrimitives.ReadUInt64LittleEndian(data);
            crc = t[(7 * 256) + (int)(crc & 0xFF)] ^ t[(6 * 256) + (int)((crc >> 8) & 0xFF)]
                ^ t[(5 * 256) + (int)((crc >> 16) & 0xFF)] ^ t[(4 * 256) + (int)((crc >> 24) & 0xFF)]
                ^ t[(3 * 256) + (int)((crc >> 32) & 0xFF)] ^ t[(2 * 256) + (int)((crc >> 40) & 0xFF)]
                ^ t[256 + (int)((crc >> 48) & 0xFF)] ^ t[(int)(crc >> 56)];
            data = data[8..];
        }
        foreach (var b in data)
        {
            crc = (crc >> 8) ^ t[(int)((crc ^ b) & 0xFF)];
        }
        return crc;
    }

    public static ulong Finish(ulong state) => ~state;

    public static ulong Compute(ReadOnlySpan<byte> data) => Finish(Update(Initial, data));
}
