using System.Buffers.Binary;
using System.Numerics;

namespace NanoKv.S3.Checksums;

/// <summary>CRC-32C (Castagnoli) via BitOperations.Crc32C, which uses the SSE4.2/ARM CRC instructions when present.</summary>
public static class Crc32C
{
    public const uint Initial = 0xFFFFFFFF;

    public static uint Update(uint state, ReadOnlySpan<byte> data)
    {
        while (data.Length >= 8)
        {
            state = BitOperations.Crc32C(state, BinaryPrimitives.ReadUInt64LittleEndian(data));
            data = data[8..];
        }
        foreach (var b in data)
        {
            state = BitOperations.Crc32C(state, b);
        }
        return state;
    }

    public static uint Finish(uint state) => ~state;

    public static uint Compute(ReadOnlySpan<byte> data) => Finish(Update(Initial, data));
}
