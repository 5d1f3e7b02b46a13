using System.Buffers.Binary;
using System.Text;
using NanoKv.Core.Hashing;

namespace NanoKv.Core;

/// <summary>Highest-random-weight (rendezvous) placement: every node scores every key; the top N hold it.</summary>
public static class Placement
{
    /// <summary>Node ids ordered from most to least preferred for the key.</summary>
    public static List<string> Rank(ReadOnlySpan<byte> key, IEnumerable<string> nodeIds)
    {
        var scored = new List<(ulong Score, string Id)>();
        foreach (var id in nodeIds)
        {
            scored.Add((Score(key, id), id));
        }
        // Ties are astronomically unlikely; ordinal id order makes them deterministic anyway.
        scored.Sort((a, b) => a.Score != b.Score ? b.Score.CompareTo(a.Score) : string.CompareOrdinal(a.Id, b.Id));
        return scored.ConvertAll(s => s.Id);
    }

    /// <summary>The N preferred node ids for a key.</summary>
    public static List<string> Choose(ReadOnlySpan<byte> key, IEnumerable<string> nodeIds, int n)
    {
        var ranked = Rank(key, nodeIds);
        return ranked.Count <= n ? ranked : ranked.GetRange(0, n);
    }

    /// <summary>BLAKE3(node id ‖ 0 ‖ key), first 8 bytes: uniform, stable across processes and versions.</summary>
    public static ulong Score(ReadOnlySpan<byte> key, string nodeId)
    {
        using var hasher = ContentHasher.New();
        hasher.Update(Encoding.UTF8.GetBytes(nodeId));
        hasher.Update([(byte)0]);
        hasher.Update(key);
        Span<byte> out8 = stackalloc byte[8];
        hasher.Finalize(out8);
        return BinaryPrimitives.ReadUInt64LittleEndian(out8);
    }
}
