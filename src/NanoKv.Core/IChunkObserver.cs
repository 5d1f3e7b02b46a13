namespace NanoKv.Core;

/// <summary>
/// A source stream that looks at each chunk a <see cref="Broadcast"/> pump read from it, by reference, instead
/// of copying what each read returned: the S3 front end's MD5 steps the pump's own buffers on the AVX-512
/// lanes (a copy of every body byte cost more CPU than the hashing's bookkeeping).
/// </summary>
public interface IChunkObserver
{
    /// <summary>Asked once before the first read; true when this observer takes every chunk from now on.</summary>
    bool ObserveChunks();

    /// <summary>
    /// The pump's next chunk, in order: length bytes read from this stream into buffer. The buffer stays
    /// unchanged until release is called, which the observer must do exactly once. Does not throw.
    /// </summary>
    ValueTask ObserveAsync(byte[] buffer, int length, Action release);
}
