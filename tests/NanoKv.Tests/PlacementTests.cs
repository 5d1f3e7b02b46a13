using System.Text;
using NanoKv.Core;

namespace NanoKv.Tests;

public class PlacementTests
{
    private static readonly string[] Nodes = ["vol-a", "vol-b", "vol-c", "vol-d", "vol-e"];

    private static byte[] Key(int i) => Encoding.UTF8.GetBytes($"key-{i}");

    [Fact]
    public void IsDeterministicAndIndependentOfNodeOrder()
    {
        for (var i = 0; i < 100; i++)
        {
            Assert.Equal(Placement.Choose(Key(i), Nodes, 3), Placement.Choose(Key(i), Nodes.Reverse(), 3));
        }
    }

    [Fact]
    public void IsBalancedWithinAFewPercent()
    {
        var counts = Nodes.ToDictionary(n => n, _ => 0);
        const int keys = 10_000;
        for (var i = 0; i < keys; i++)
        {
            counts[Placement.Choose(Key(i), Nodes, 1)[0]]++;
        }
        var expected = keys / Nodes.Length;
        foreach (var (node, count) in counts)
        {
            Assert.InRange(count, expected * 0.94, expected * 1.06);
        }
    }

    [Fact]
    public void AddingANodeMovesAboutOneOverNPlusOne()
    {
        const int keys = 10_000;
        var bigger = Nodes.Append("vol-f").ToArray();
        var moved = 0;
        for (var i = 0; i < keys; i++)
        {
            var before = Placement.Choose(Key(i), Nodes, 1)[0];
            var after = Placement.Choose(Key(i), bigger, 1)[0];
            if (before != after)
            {
                moved++;
                Assert.Equal("vol-f", after); // keys only ever move to the new node
            }
        }
        var fraction = moved / (double)keys;
        Assert.InRange(fraction, 1.0 / 6 - 0.02, 1.0 / 6 + 0.02);
    }

    [Fact]
    public void ChoosesDistinctReplicas()
    {
        var chosen = Placement.Choose(Key(7), Nodes, 3);
        Assert.Equal(3, chosen.Distinct().Count());
        Assert.Equal(Placement.Rank(Key(7), Nodes).Take(3), chosen);
    }
}
