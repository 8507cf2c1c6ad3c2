using LLama.Native;

namespace P2PInference.Workers.Processor.Engines;

/// <summary>
/// Loads llama.cpp's native library once per process (LLamaSharp picks the CPU build the machine
/// supports: AVX-512, AVX2, AVX or none) and keeps its log chatter off the console. A machine the
/// backend cannot run on gets one clear, typed error instead of a type-initializer failure.
/// </summary>
internal static class LlamaNative
{
    private static readonly Lazy<Exception?> LoadFailure = new(Load, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>Throws <see cref="InferenceException"/> (<see cref="InferenceErrorKind.EngineUnavailable"/>) when the backend cannot run here.</summary>
    public static void EnsureLoaded()
    {
        if (LoadFailure.Value is { } failure)
        {
            throw new InferenceException(InferenceErrorKind.EngineUnavailable,
                $"The llama.cpp CPU backend cannot run on this machine ({System.Runtime.InteropServices.RuntimeInformation.RuntimeIdentifier}): {failure.Message}",
                innerException: failure);
        }
    }

    private static Exception? Load()
    {
        try
        {
            // Only warnings and errors; llama.cpp logs every tensor at load otherwise.
            NativeLibraryConfig.All.WithLogCallback(static (level, message) =>
            {
                if (level is LLamaLogLevel.Error or LLamaLogLevel.Warning) LastMessages.Add(message);
            });
            NativeApi.llama_empty_call();
            return null;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or BadImageFormatException
                                      or TypeInitializationException or InvalidOperationException or LLama.Exceptions.RuntimeError)
        {
            return e;
        }
    }

    /// <summary>The backend's recent warnings and errors (bounded), for diagnostics when a load fails.</summary>
    internal static readonly BoundedLog LastMessages = new(32);

    internal sealed class BoundedLog(int capacity)
    {
        private readonly Queue<string> _messages = new();

        public void Add(string message)
        {
            lock (_messages)
            {
                _messages.Enqueue(message.TrimEnd());
                while (_messages.Count > capacity) _messages.Dequeue();
            }
        }

        public void Clear()
        {
            lock (_messages) _messages.Clear();
        }

        public string Snapshot()
        {
            lock (_messages) return string.Join(" | ", _messages);
        }
    }
}
