using NanoKv.Core;

namespace NanoKv.Coordinator;

/// <summary>
/// A coordinator's id, kept in its state folder (`coordinator_id`) so it survives restarts: pending writes
/// name their owner with it, and a restarted coordinator recognises its own interrupted writes.
/// </summary>
public static class CoordinatorIdentity
{
    public static string LoadOrCreate(string dbDir)
    {
        Directory.CreateDirectory(dbDir);
        var file = Path.Combine(dbDir, "coordinator_id");
        if (File.Exists(file) && File.ReadAllText(file).Trim() is { Length: > 0 } id)
        {
            return id;
        }
        id = $"{Environment.MachineName}-{Guid.NewGuid().ToString("N")[..8]}";
        Durable.WriteAllBytes(file, System.Text.Encoding.UTF8.GetBytes(id));
        return id;
    }
}
