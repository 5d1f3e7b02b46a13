using System.Runtime.InteropServices;

namespace NanoKv.Core.Hashing;

/// <summary>Which BLAKE3 implementation hashes content in this process.</summary>
public enum HashBackend
{
    /// <summary>The reference C implementation (SSE2/SSE4.1/AVX2/AVX-512 chosen at run time), built with the project.</summary>
    Native,

    /// <summary>The managed <c>Blake3</c> package: several times slower, and slowest on small spans.</summary>
    Managed,
}

/// <summary>
/// Incremental BLAKE3 over content. Uses the native library <c>libnanokv_blake3.so</c> when the build produced
/// it (a 4 KiB update costs ~7x less than the managed package and needs no JIT tier to be fast from the first
/// request), else the managed package. Both give identical digests; <c>NANOKV_BLAKE3=managed</c> forces the
/// managed one.
/// </summary>
public sealed unsafe class ContentHasher : IDisposable
{
    private static readonly NativeApi? Api = NativeApi.TryLoad();

    private readonly Blake3.Hasher? managed;
    private void* state;

    private ContentHasher()
    {
        if (Api is { } api)
        {
            state = NativeMemory.AlignedAlloc(api.StateSize, 64);
            api.Init(state);
        }
        else
        {
            managed = Blake3.Hasher.New();
        }
    }

    /// <summary>The implementation this process uses (logged at start, exported by /healthz and guarded by a test).</summary>
    public static HashBackend Backend => Api is null ? HashBackend.Managed : HashBackend.Native;

    /// <summary>Why the native library is not in use, or null when it is.</summary>
    public static string? NativeUnavailableReason => NativeApi.LoadError;

    public static ContentHasher New() => new();

    /// <summary>Lower-case hex BLAKE3 of data.</summary>
    public static string Hash(ReadOnlySpan<byte> data)
    {
        using var h = New();
        h.Update(data);
        return h.FinalizeHex();
    }

    public void Update(ReadOnlySpan<byte> data)
    {
        if (state is null)
        {
            managed!.Update(data);
            return;
        }
        fixed (byte* p = data)
        {
            Api!.Update(state, p, (nuint)data.Length);
        }
    }

    /// <summary>Writes the first output.Length bytes of the digest (32 for the full hash).</summary>
    public void Finalize(Span<byte> output)
    {
        if (state is null)
        {
            managed!.Finalize(output);
            return;
        }
        fixed (byte* p = output)
        {
            Api!.Finalize(state, p, (nuint)output.Length);
        }
    }

    public string FinalizeHex()
    {
        Span<byte> digest = stackalloc byte[32];
        Finalize(digest);
        return Convert.ToHexStringLower(digest);
    }

    public void Dispose()
    {
        if (state is not null)
        {
            NativeMemory.AlignedFree(state);
            state = null;
        }
        else
        {
            managed?.Dispose();
        }
    }

    private sealed class NativeApi
    {
        public const string LibraryName = "libnanokv_blake3.so";

        public static string? LoadError { get; private set; }

        public nuint StateSize { get; private init; }
        public delegate* unmanaged<void*, void> Init { get; private init; }
        public delegate* unmanaged<void*, byte*, nuint, void> Update { get; private init; }
        public delegate* unmanaged<void*, byte*, nuint, void> Finalize { get; private init; }

        public static NativeApi? TryLoad()
        {
            if (string.Equals(Environment.GetEnvironmentVariable("NANOKV_BLAKE3"), "managed", StringComparison.OrdinalIgnoreCase))
            {
                LoadError = "NANOKV_BLAKE3=managed";
                return null;
            }
            var path = Path.Combine(AppContext.BaseDirectory, LibraryName);
            if (!File.Exists(path))
            {
                LoadError = $"{LibraryName} was not built (needs a C compiler and Debian's librust-blake3-dev at build time)";
                return null;
            }
            try
            {
                var lib = NativeLibrary.Load(path);
                var size = (delegate* unmanaged<nuint>)NativeLibrary.GetExport(lib, "nanokv_blake3_hasher_size");
                return new NativeApi
                {
                    StateSize = size(),
                    Init = (delegate* unmanaged<void*, void>)NativeLibrary.GetExport(lib, "blake3_hasher_init"),
                    Update = (delegate* unmanaged<void*, byte*, nuint, void>)NativeLibrary.GetExport(lib, "blake3_hasher_update"),
                    Finalize = (delegate* unmanaged<void*, byte*, nuint, void>)NativeLibrary.GetExport(lib, "blake3_hasher_finalize"),
                };
            }
            catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException or BadImageFormatException)
            {
                LoadError = $"{LibraryName}: {ex.Message}";
                return null;
            }
        }
    }
}
