using System.Reflection;
using System.Runtime.CompilerServices;

namespace P2PInference.TestKit.Simulation;

/// <summary>
/// The type whose code a step runs, as the trace records it: the same in every process for the same
/// schedule. While something listens to the TPL event source (a tracing tool asking for task events,
/// an IDE, an in-process <c>EventListener</c>), the runtime wraps each await continuation in its
/// <c>ContinuationWrapper</c> and boxes async methods in a <c>DebugFinalizableAsyncStateMachineBox</c>.
/// The steps are the same, but hashing those types gave a traced process another trace hash from the
/// moment the listener attached, with identical results.
/// </summary>
internal static class SimulationCodeType
{
    private const string DebugBoxName = "DebugFinalizableAsyncStateMachineBox`1";

    private static readonly Type? s_wrapperType = typeof(AsyncTaskMethodBuilder).Assembly
        .GetType("System.Runtime.CompilerServices.AsyncMethodBuilderCore+ContinuationWrapper");

    // A runtime internal: if a later runtime renames it, the regression test of the trace under a
    // TPL listener fails rather than the trace silently depending on listeners again.
    private static readonly FieldInfo? s_wrapped = s_wrapperType?.GetField("_continuation", BindingFlags.Instance | BindingFlags.NonPublic);

    /// <summary>The type of the code <paramref name="callback"/> runs, seen through the runtime's tracing wrappers.</summary>
    public static Type Of(Delegate callback)
    {
        while (callback.Target is { } target && target.GetType() == s_wrapperType && s_wrapped?.GetValue(target) is Delegate inner)
            callback = inner;
        return callback.Target is { } code ? Of(code.GetType()) : callback.Method.DeclaringType ?? typeof(Delegate);
    }

    /// <summary><paramref name="type"/>, or the plain state machine box a tracing-only box derives from.</summary>
    public static Type Of(Type type) =>
        type.IsGenericType && type.Name == DebugBoxName && type.BaseType is { } box ? box : type;
}
