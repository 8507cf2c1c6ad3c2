using P2PInference.Facilities.Rpc;

namespace P2PInference.Tests.Unit.Support;

/// <summary>Small pieces RPC tests share; they await rather than block, so they work inside a simulation.</summary>
internal static class RpcTestCalls
{
    /// <summary>The error a call ends with; fails the test when it succeeds.</summary>
    public static async Task<RpcException> ErrorOf(Func<Task> call)
    {
        try
        {
            await call();
        }
        catch (RpcException e)
        {
            return e;
        }
        Assert.Fail("the call succeeded");
        throw new InvalidOperationException();
    }

    /// <summary>A streaming handler's items: tells <paramref name="counted"/> it ran, then yields one item, {1}.</summary>
    public static async IAsyncEnumerable<ReadOnlyMemory<byte>> OneItem(Action counted)
    {
        counted();
        await Task.Yield();
        yield return new byte[] { 1 };
    }
}
