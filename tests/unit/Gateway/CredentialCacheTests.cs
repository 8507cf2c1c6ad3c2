using P2PInference.Facilities.Rpc;
using FakeTimeProvider = Microsoft.Extensions.Time.Testing.FakeTimeProvider;
using P2PInference.Workers.Gateway;

namespace P2PInference.Tests.Unit.Gateway;

public sealed class CredentialCacheTests
{
    private static readonly GatewayCredential Key = new(CredentialKind.ApiKey, "pk_secret");
    private static readonly AuthenticatedCaller Ada = new("user-1", "ada@example.com", "key-1", null, null);

    [Test]
    public void Accepted_IsKeptForTheTtl_ThenForgotten()
    {
        var time = new FakeTimeProvider();
        var cache = new CredentialCache(time, TimeSpan.FromSeconds(30), TimeSpan.Zero, 10);
        cache.AddAccepted(Key, Ada);

        time.Advance(TimeSpan.FromSeconds(29));
        Assert.That(cache.TryGet(Key, out var caller, out var refusal), Is.True);
        Assert.That(caller, Is.EqualTo(Ada));
        Assert.That(refusal, Is.Null);
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.That(cache.TryGet(Key, out _, out _), Is.False);
    }

    [Test]
    public void Accepted_Token_IsNotKeptPastItsOwnExpiry()
    {
        var time = new FakeTimeProvider();
        var cache = new CredentialCache(time, TimeSpan.FromSeconds(30), TimeSpan.Zero, 10);
        var token = new GatewayCredential(CredentialKind.Bearer, "a.b.c");
        cache.AddAccepted(token, Ada with { KeyId = "", ExpiresAt = time.GetUtcNow().AddSeconds(5) });

        time.Advance(TimeSpan.FromSeconds(5));

        Assert.That(cache.TryGet(token, out _, out _), Is.False);
    }

    [Test]
    public void Remove_ForgetsThatCredentialOnly()
    {
        var cache = new CredentialCache(new FakeTimeProvider(), TimeSpan.FromSeconds(30), TimeSpan.Zero, 10);
        var loggedOut = new GatewayCredential(CredentialKind.Bearer, "a.b.c");
        var other = new GatewayCredential(CredentialKind.Bearer, "d.e.f");
        cache.AddAccepted(loggedOut, Ada with { KeyId = "" });
        cache.AddAccepted(other, Ada with { KeyId = "" });

        cache.Remove(loggedOut);

        Assert.That(cache.TryGet(loggedOut, out _, out _), Is.False);
        Assert.That(cache.TryGet(other, out _, out _), Is.True);
    }

    [Test]
    public void RemoveTokensOf_ForgetsTheUsersTokens_ButNotTheirKeys_NorOtherUsersTokens()
    {
        var cache = new CredentialCache(new FakeTimeProvider(), TimeSpan.FromSeconds(30), TimeSpan.Zero, 10);
        var adaToken = new GatewayCredential(CredentialKind.Bearer, "a.b.c");
        var bobToken = new GatewayCredential(CredentialKind.Bearer, "d.e.f");
        cache.AddAccepted(adaToken, Ada with { KeyId = "" });
        cache.AddAccepted(Key, Ada);
        cache.AddAccepted(bobToken, new AuthenticatedCaller("user-2", "bob@example.com", "", null, null));

        cache.RemoveTokensOf(Ada.UserId);

        Assert.That(cache.TryGet(adaToken, out _, out _), Is.False);
        Assert.That(cache.TryGet(Key, out _, out _), Is.True);
        Assert.That(cache.TryGet(bobToken, out _, out _), Is.True);
    }

    [Test]
    public void Refused_IsKeptOnlyForTheNegativeTtl_AndNotAtAllWhenItIsZero()
    {
        var time = new FakeTimeProvider();
        var brief = new CredentialCache(time, TimeSpan.FromSeconds(30), TimeSpan.FromSeconds(2), 10);
        var never = new CredentialCache(time, TimeSpan.FromSeconds(30), TimeSpan.Zero, 10);
        var refusal = new RpcException(RpcStatusCode.Unauthenticated, "revoked");
        brief.AddRefused(Key, refusal);
        never.AddRefused(Key, refusal);

        Assert.That(brief.TryGet(Key, out _, out var cached), Is.True);
        Assert.That(cached!.Code, Is.EqualTo(RpcStatusCode.Unauthenticated));
        Assert.That(never.TryGet(Key, out _, out _), Is.False);
        time.Advance(TimeSpan.FromSeconds(2));
        Assert.That(brief.TryGet(Key, out _, out _), Is.False);
    }

    [Test]
    public void KeyAndTokenWithTheSameText_AreDifferentCredentials()
    {
        var cache = new CredentialCache(new FakeTimeProvider(), TimeSpan.FromSeconds(30), TimeSpan.Zero, 10);
        cache.AddAccepted(Key, Ada);

        Assert.That(cache.TryGet(new GatewayCredential(CredentialKind.Bearer, Key.Value), out _, out _), Is.False);
    }

    [Test]
    public void Size_IsBounded()
    {
        var cache = new CredentialCache(new FakeTimeProvider(), TimeSpan.FromSeconds(30), TimeSpan.Zero, 50);

        for (var i = 0; i < 5_000; i++) cache.AddAccepted(new GatewayCredential(CredentialKind.ApiKey, "k" + i), Ada);

        Assert.That(cache.Count, Is.LessThanOrEqualTo(50));
        Assert.That(cache.TryGet(new GatewayCredential(CredentialKind.ApiKey, "k4999"), out _, out _), Is.True, "the newest is kept");
    }
}
