using P2PInference.Workers.Auth;

namespace P2PInference.Tests.Unit.Auth;

internal static class AuthAssert
{
    /// <summary>Runs <paramref name="call"/> and returns the <see cref="AuthException"/> it must throw with <paramref name="code"/>.</summary>
    public static async Task<AuthException> ThrowsAsync(AuthErrorCode code, Func<Task> call)
    {
        try
        {
            await call();
        }
        catch (AuthException e)
        {
            Assert.That(e.Code, Is.EqualTo(code), e.Message);
            return e;
        }

        Assert.Fail($"expected AuthException {code}, but the call succeeded");
        throw new InvalidOperationException("unreachable");
    }

    public static AuthException Throws(AuthErrorCode code, Action call) =>
        ThrowsAsync(code, () =>
        {
            call();
            return Task.CompletedTask;
        }).GetAwaiter().GetResult();
}
