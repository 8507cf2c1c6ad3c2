using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Rpc;

/// <summary>What a client checks before anything goes on the wire; shared by the real node and the TestKit twin.</summary>
internal static class RpcCallChecks
{
    /// <summary>The call's deadline (null for none), after refusing an oversized request or a deadline already passed.</summary>
    public static DateTimeOffset? Check(RpcOptions rpcOptions, string method, ReadOnlyMemory<byte> request, RpcCallOptions options)
    {
        ArgumentException.ThrowIfNullOrEmpty(method);
        if (request.Length > rpcOptions.MaxMessageSize)
            throw new RpcException(RpcStatusCode.ResourceExhausted,
                $"request of {request.Length} bytes exceeds the limit of {rpcOptions.MaxMessageSize} bytes; it was not sent");
        var deadline = options.ResolveDeadline(rpcOptions.TimeProvider, rpcOptions.DefaultTimeout);
        var now = rpcOptions.TimeProvider.GetUtcNow();
        if (deadline is { } d && d <= now)
            throw new RpcException(RpcStatusCode.DeadlineExceeded, "the deadline passed before the call was made");
        if (deadline is { } far && far - now > RpcCallOptions.MaxTimeout)
            throw new RpcException(RpcStatusCode.InvalidArgument,
                $"a deadline {(far - now).TotalDays:0.#} days away is past the most a call may be given ({RpcCallOptions.MaxTimeout.TotalDays:0.#} days); it was not sent");
        return deadline;
    }

    /// <summary>16 bytes from <paramref name="source"/> as 32 lowercase hex digits (the shape a Guid's "N" format had).</summary>
    public static string NewTraceId(IRandomSource source) => source.NextHex(16);
}
