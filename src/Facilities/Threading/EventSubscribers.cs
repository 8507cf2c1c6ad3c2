using Microsoft.Extensions.Logging;

namespace P2PInference.Facilities.Threading;

/// <summary>
/// Raises a public event so that a subscriber's exception is logged and goes no further: not into the code that
/// raised it (a connection being registered, a hole punch reporting, a NAT status being tallied), and not past the
/// subscribers after it, which still run. A plain <c>handler?.Invoke</c> would stop at the first that throws.
/// </summary>
public static class EventSubscribers
{
    public static void Raise(Action? handler, ILogger logger, string eventName) =>
        Raise(handler, 0, static (subscriber, _) => subscriber(), logger, eventName);

    public static void Raise<T>(Action<T>? handler, T argument, ILogger logger, string eventName) =>
        Raise(handler, argument, static (subscriber, argument) => subscriber(argument), logger, eventName);

    public static void Raise<T1, T2>(Action<T1, T2>? handler, T1 first, T2 second, ILogger logger, string eventName) =>
        Raise(handler, (first, second), static (subscriber, a) => subscriber(a.first, a.second), logger, eventName);

    public static void Raise<T1, T2, T3>(Action<T1, T2, T3>? handler, T1 first, T2 second, T3 third, ILogger logger, string eventName) =>
        Raise(handler, (first, second, third), static (subscriber, a) => subscriber(a.first, a.second, a.third), logger, eventName);

    private static void Raise<TDelegate, TArguments>(
        TDelegate? handler, TArguments arguments, Action<TDelegate, TArguments> invoke, ILogger logger, string eventName)
        where TDelegate : Delegate
    {
        if (handler is null) return;
        foreach (var subscriber in Delegate.EnumerateInvocationList(handler))
        {
            try
            {
                invoke(subscriber, arguments);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                Failed(logger, e, eventName);
            }
        }
    }

    private static void Failed(ILogger logger, Exception e, string eventName) =>
        logger.LogWarning(e, "a subscriber of {Event} failed", eventName);
}
