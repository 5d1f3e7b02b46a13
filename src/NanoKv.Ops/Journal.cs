using System.Text;

namespace NanoKv.Ops;

/// <summary>
/// Append-only list of keys a run has finished, so a run killed (even with kill -9) and started again with
/// the same arguments skips them. One file per command + argument fingerprint; deleted when a run completes.
/// Lines are fsync'd in small batches: a lost tail only means redoing a few keys, and every step is idempotent.
/// </summary>
public sealed class Journal : IDisposable
{
    private const int SyncEvery = 32;
    private readonly HashSet<string> _done;
    private readonly FileStream _file;
    private readonly Lock _lock = new();
    private int _unsynced;

    private Journal(string path, HashSet<string> done, FileStream file)
    {
        Path = path;
        _done = done;
        _file = file;
        Resumed = done.Count;
    }

    public string Path { get; }

    /// <summary>Keys already finished by an earlier, interrupted run.</summary>
    public int Resumed { get; }

    public static Journal Open(string dir, OpsOptions options)
    {
        Directory.CreateDirectory(dir);
        var path = System.IO.Path.Combine(dir, $"{options.Command}-{options.Fingerprint()}.journal");
        var done = new HashSet<string>(StringComparer.Ordinal);
        if (File.Exists(path))
        {
            foreach (var line in File.ReadLines(path))
            {
                // A torn last line (crash mid-write) has no newline-terminated "done " prefix match; ignore it.
                if (line.StartsWith("done ", StringComparison.Ordinal) && line.Length > 5)
                {
                    done.Add(line[5..]);
                }
            }
        }
        var file = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read);
        return new Journal(path, done, file);
    }

    public bool IsDone(string key)
    {
        lock (_lock)
        {
            return _done.Contains(key);
        }
    }

    public void MarkDone(string key)
    {
        lock (_lock)
        {
            if (!_done.Add(key))
            {
                return;
            }
            _file.Write(Encoding.UTF8.GetBytes("done " + key + "\n"));
            if (++_unsynced >= SyncEvery)
            {
                _file.Flush(flushToDisk: true);
                _unsynced = 0;
            }
        }
    }

    /// <summary>The run finished: the next run with these arguments starts from scratch.</summary>
    public void Complete()
    {
        lock (_lock)
        {
            _file.Dispose();
            File.Delete(Path);
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_file.CanWrite)
            {
                _file.Flush(flushToDisk: true);
            }
            _file.Dispose();
        }
    }
}
