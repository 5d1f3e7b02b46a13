namespace NanoKv.Metadata;

/// <summary>Record writes and deletes collected for <see cref="IMetaStore.WriteRecords"/> and applied atomically.</summary>
public sealed class RecordBatch
{
    private readonly List<(RecordTable Table, byte[] Key, byte[]? Value)> _ops = [];

    /// <summary>The collected operations in order; a null value is a delete.</summary>
    public IReadOnlyList<(RecordTable Table, byte[] Key, byte[]? Value)> Operations => _ops;

    public void Put<T>(RecordTable table, ReadOnlySpan<byte> key, T value) => _ops.Add((table, key.ToArray(), MetaCodec.Encode(value)));

    public void Delete(RecordTable table, ReadOnlySpan<byte> key) => _ops.Add((table, key.ToArray(), null));
}
