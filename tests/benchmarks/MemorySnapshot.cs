using System.Diagnostics;

namespace P2PInference.Benchmarks;

/// <summary>Managed heap (after a full collection) and process working set, for before/after deltas.</summary>
internal readonly record struct MemorySnapshot(long Heap, long WorkingSet)
{
    public static MemorySnapshot Take()
    {
        for (var i = 0; i < 3; i++)
        {
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
            GC.WaitForPendingFinalizers();
        }
        var heap = GC.GetTotalMemory(forceFullCollection: true);
        using var process = Process.GetCurrentProcess();
        process.Refresh();
        return new MemorySnapshot(heap, process.WorkingSet64);
    }

    /// <summary>KiB per item of the growth from <paramref name="before"/> to <paramref name="after"/>.</summary>
    public static (double HeapKiB, double WorkingSetKiB) PerItem(MemorySnapshot before, MemorySnapshot after, int items) =>
        ((after.Heap - before.Heap) / 1024.0 / items, (after.WorkingSet - before.WorkingSet) / 1024.0 / items);
}
