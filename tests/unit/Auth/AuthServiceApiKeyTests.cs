using P2PInference.Workers.Auth;
using P2PInference.Workers.Contracts.Auth;

namespace P2PInference.Tests.Unit.Auth;

[TestFixture]
public sealed class AuthServiceApiKeyTests
{
    private AuthHarness _auth = null!;

    [SetUp]
    public async Task SetUp() => _auth = await AuthHarness.CreateAsync();

    [TearDown]
    public async Task TearDown() => await _auth.DisposeAsync();

    [Test, CancelAfter(10000)]
    public async Task CreateApiKey_ShowsTheKeyOnce_AndItValidates(CancellationToken ct)
    {
        var (email, userId, token) = await _auth.RegisterAndLoginAsync(ct);
        var created = await _auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = token, Name = "laptop" }, ct);

        Assert.That(created.ApiKey, Does.StartWith("p2pi_"));
        Assert.That(created.KeyId, Does.StartWith("key_"));
        Assert.That(created.Name, Is.EqualTo("laptop"));
        Assert.That(created.CreatedAtUnixMs, Is.EqualTo(_auth.Time.GetUtcNow().ToUnixTimeMilliseconds()));

        var validated = await _auth.Service.ValidateAsync(new ValidateRequest { ApiKey = created.ApiKey }, ct);
        Assert.Multiple(() =>
        {
            Assert.That(validated.UserId, Is.EqualTo(userId));
            Assert.That(validated.Email, Is.EqualTo(email));
            Assert.That(validated.KeyId, Is.EqualTo(created.KeyId));
            Assert.That(validated.Quota!.RequestsPerMinute, Is.EqualTo(_auth.Options.DefaultQuota.RequestsPerMinute));
            Assert.That(validated.Quota!.Burst, Is.EqualTo(_auth.Options.DefaultQuota.Burst));
        });
    }

    [Test, CancelAfter(10000)]
    public async Task CreateApiKey_StoresOnlyAHash_AndListNeverRevealsTheKey(CancellationToken ct)
    {
        var (_, _, token) = await _auth.RegisterAndLoginAsync(ct);
        var first = await _auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = token, Name = "first" }, ct);
        _auth.Time.Advance(TimeSpan.FromSeconds(1));
        var second = await _auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = token, Name = "second" }, ct);

        var snapshot = await _auth.SnapshotAsync(ct);
        foreach (var key in new[] { first.ApiKey, second.ApiKey })
        {
            var secretHex = Convert.ToHexString(System.Text.Encoding.UTF8.GetBytes(key["p2pi_".Length..]));
            Assert.That(snapshot.Keys, Has.None.Contains(key["p2pi_".Length..]), "no key is a store key");
            Assert.That(snapshot.Values, Has.None.Contains(secretHex), "no value holds the key");
        }

        var list = await _auth.Service.ListApiKeysAsync(new ListApiKeysRequest { Token = token }, ct);
        Assert.That(list.Keys.Select(k => k.Name), Is.EqualTo(new[] { "first", "second" }));
        Assert.That(list.Keys.Select(k => k.KeyId), Is.EqualTo(new[] { first.KeyId, second.KeyId }));
        Assert.That(list.Keys.Select(k => k.Last4), Is.EqualTo(new[] { first.ApiKey[^4..], second.ApiKey[^4..] }));
        Assert.That(list.Keys.Select(k => k.Revoked), Is.All.False);
        Assert.That(list.ToString(), Does.Not.Contain(first.ApiKey[5..]).And.Not.Contain(second.ApiKey[5..]));
    }

    [Test, CancelAfter(10000)]
    public async Task ListApiKeys_ShowsOnlyTheCallersKeys(CancellationToken ct)
    {
        var (_, _, alice) = await _auth.RegisterAndLoginAsync(ct);
        var (_, _, bob) = await _auth.RegisterAndLoginAsync(ct);
        await _auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = alice, Name = "alice's" }, ct);
        await _auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = bob, Name = "bob's" }, ct);

        var aliceKeys = await _auth.Service.ListApiKeysAsync(new ListApiKeysRequest { Token = alice }, ct);
        var bobKeys = await _auth.Service.ListApiKeysAsync(new ListApiKeysRequest { Token = bob }, ct);
        Assert.That(aliceKeys.Keys.Select(k => k.Name), Is.EqualTo(new[] { "alice's" }));
        Assert.That(bobKeys.Keys.Select(k => k.Name), Is.EqualTo(new[] { "bob's" }));
    }

    [Test, CancelAfter(10000)]
    public async Task RevokeApiKey_MakesValidateFail_AndShowsInTheList(CancellationToken ct)
    {
        var (_, _, token) = await _auth.RegisterAndLoginAsync(ct);
        var kept = await _auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = token, Name = "kept" }, ct);
        var revoked = await _auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = token, Name = "revoked" }, ct);
        _auth.Time.Advance(TimeSpan.FromMinutes(5));

        var response = await _auth.Service.RevokeApiKeyAsync(new RevokeApiKeyRequest { Token = token, KeyId = revoked.KeyId }, ct);
        Assert.That(response.NewlyRevoked, Is.True);

        var error = await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () => _auth.Service.ValidateAsync(new ValidateRequest { ApiKey = revoked.ApiKey }, ct));
        Assert.That(error.Message, Does.Contain("revoked"));
        Assert.DoesNotThrowAsync(() => _auth.Service.ValidateAsync(new ValidateRequest { ApiKey = kept.ApiKey }, ct), "other keys keep working");

        var list = await _auth.Service.ListApiKeysAsync(new ListApiKeysRequest { Token = token }, ct);
        var entry = list.Keys.Single(k => k.KeyId == revoked.KeyId);
        Assert.That(entry.Revoked, Is.True);
        Assert.That(entry.RevokedAtUnixMs, Is.EqualTo(_auth.Time.GetUtcNow().ToUnixTimeMilliseconds()));
        Assert.That(list.Keys.Single(k => k.KeyId == kept.KeyId).Revoked, Is.False);
    }

    [Test, CancelAfter(10000)]
    public async Task RevokeApiKey_IsIdempotent_AndChangesNothingTheSecondTime(CancellationToken ct)
    {
        var (_, _, token) = await _auth.RegisterAndLoginAsync(ct);
        var key = await _auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = token, Name = "k" }, ct);
        await _auth.Service.RevokeApiKeyAsync(new RevokeApiKeyRequest { Token = token, KeyId = key.KeyId }, ct);
        var before = await _auth.SnapshotAsync(ct);
        _auth.Time.Advance(TimeSpan.FromMinutes(1));

        var again = await _auth.Service.RevokeApiKeyAsync(new RevokeApiKeyRequest { Token = token, KeyId = key.KeyId }, ct);

        Assert.That(again.NewlyRevoked, Is.False);
        Assert.That(await _auth.SnapshotAsync(ct), Is.EqualTo(before));
    }

    [Test, CancelAfter(10000)]
    public async Task RevokeApiKey_RefusesSomeoneElsesKey_AndUnknownKeys(CancellationToken ct)
    {
        var (_, _, alice) = await _auth.RegisterAndLoginAsync(ct);
        var (_, _, mallory) = await _auth.RegisterAndLoginAsync(ct);
        var key = await _auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = alice, Name = "alice's" }, ct);
        var before = await _auth.SnapshotAsync(ct);

        await AuthAssert.ThrowsAsync(AuthErrorCode.PermissionDenied, () =>
            _auth.Service.RevokeApiKeyAsync(new RevokeApiKeyRequest { Token = mallory, KeyId = key.KeyId }, ct));
        await AuthAssert.ThrowsAsync(AuthErrorCode.NotFound, () =>
            _auth.Service.RevokeApiKeyAsync(new RevokeApiKeyRequest { Token = alice, KeyId = "key_" + new string('0', 32) }, ct));
        await AuthAssert.ThrowsAsync(AuthErrorCode.InvalidArgument, () =>
            _auth.Service.RevokeApiKeyAsync(new RevokeApiKeyRequest { Token = alice, KeyId = "../api-keys/x" }, ct));
        await AuthAssert.ThrowsAsync(AuthErrorCode.InvalidArgument, () =>
            _auth.Service.RevokeApiKeyAsync(new RevokeApiKeyRequest { Token = alice }, ct));

        Assert.That(await _auth.SnapshotAsync(ct), Is.EqualTo(before));
        Assert.DoesNotThrowAsync(() => _auth.Service.ValidateAsync(new ValidateRequest { ApiKey = key.ApiKey }, ct));
    }

    [Test, CancelAfter(10000)]
    public async Task ApiKeyCalls_RefuseBadTokens_AndBadNames(CancellationToken ct)
    {
        var (_, _, token) = await _auth.RegisterAndLoginAsync(ct);
        var before = await _auth.SnapshotAsync(ct);

        await AuthAssert.ThrowsAsync(AuthErrorCode.InvalidArgument, () => _auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Name = "k" }, ct));
        await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () => _auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = "not.a.token", Name = "k" }, ct));
        await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () => _auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = token + "x", Name = "k" }, ct));
        await AuthAssert.ThrowsAsync(AuthErrorCode.InvalidArgument, () => _auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = token }, ct));
        await AuthAssert.ThrowsAsync(AuthErrorCode.InvalidArgument, () => _auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = token, Name = "   " }, ct));
        await AuthAssert.ThrowsAsync(AuthErrorCode.InvalidArgument, () => _auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = token, Name = new string('n', 65) }, ct));
        await AuthAssert.ThrowsAsync(AuthErrorCode.InvalidArgument, () => _auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = token, Name = "tab\there" }, ct));
        await AuthAssert.ThrowsAsync(AuthErrorCode.InvalidArgument, () => _auth.Service.ListApiKeysAsync(new ListApiKeysRequest(), ct));
        await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () => _auth.Service.ListApiKeysAsync(new ListApiKeysRequest { Token = new string('a', 1 << 20) }, ct));
        await AuthAssert.ThrowsAsync(AuthErrorCode.InvalidArgument, () => _auth.Service.CreateApiKeyAsync(null!, ct));

        Assert.That(await _auth.SnapshotAsync(ct), Is.EqualTo(before));
    }

    [Test, CancelAfter(10000)]
    public async Task CreateApiKey_StopsAtTheMaximumPerUser(CancellationToken ct)
    {
        await using var auth = await AuthHarness.CreateAsync(o => o.MaxApiKeysPerUser = 3);
        var (_, _, token) = await auth.RegisterAndLoginAsync(ct);
        for (var i = 0; i < 3; i++)
        {
            await auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = token, Name = $"k{i}" }, ct);
        }

        var before = await auth.SnapshotAsync(ct);
        await AuthAssert.ThrowsAsync(AuthErrorCode.ResourceExhausted, () => auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = token, Name = "one too many" }, ct));
        Assert.That(await auth.SnapshotAsync(ct), Is.EqualTo(before));
    }

    [Test, CancelAfter(10000)]
    public async Task CreateApiKey_AtTheMaximum_CountsOnlyUnrevokedKeys_AndRevokedOnesStayRefused(CancellationToken ct)
    {
        await using var auth = await AuthHarness.CreateAsync(o => o.MaxApiKeysPerUser = 3);
        var (_, _, token) = await auth.RegisterAndLoginAsync(ct);
        var first = new List<CreateApiKeyResponse>();
        for (var i = 0; i < 3; i++)
        {
            first.Add(await auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = token, Name = $"k{i}" }, ct));
            auth.Time.Advance(TimeSpan.FromSeconds(1));
        }

        foreach (var key in first)
        {
            await auth.Service.RevokeApiKeyAsync(new RevokeApiKeyRequest { Token = token, KeyId = key.KeyId }, ct);
            auth.Time.Advance(TimeSpan.FromSeconds(1));
        }

        // Three revoked keys leave the whole cap free: a user who revoked their keys can make new ones.
        var second = new List<CreateApiKeyResponse>();
        for (var i = 0; i < 3; i++)
        {
            second.Add(await auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = token, Name = $"new{i}" }, ct));
        }

        await AuthAssert.ThrowsAsync(AuthErrorCode.ResourceExhausted, () => auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = token, Name = "one too many" }, ct));
        foreach (var key in second)
        {
            Assert.DoesNotThrowAsync(() => auth.Service.ValidateAsync(new ValidateRequest { ApiKey = key.ApiKey }, ct));
        }

        foreach (var key in first)
        {
            await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () => auth.Service.ValidateAsync(new ValidateRequest { ApiKey = key.ApiKey }, ct));
        }

        var list = await auth.Service.ListApiKeysAsync(new ListApiKeysRequest { Token = token }, ct);
        Assert.That(list.Keys.Select(k => k.Name), Is.EquivalentTo(new[] { "new0", "new1", "new2" }), "revoked keys give their place in the list to new ones");
    }

    [Test, CancelAfter(10000)]
    public async Task CreateAndRevokeInALoop_KeepsTheStoreBounded_AndDepartedKeysStayRefused(CancellationToken ct)
    {
        await using var auth = await AuthHarness.CreateAsync(o => o.MaxApiKeysPerUser = 3);
        var (_, _, token) = await auth.RegisterAndLoginAsync(ct);
        var created = new List<CreateApiKeyResponse>();
        for (var i = 0; i < 3; i++)
        {
            created.Add(await auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = token, Name = $"k{i}" }, ct));
            await auth.Service.RevokeApiKeyAsync(new RevokeApiKeyRequest { Token = token, KeyId = created[^1].KeyId }, ct);
            auth.Time.Advance(TimeSpan.FromSeconds(1));
        }

        var entriesAtTheCap = (await auth.SnapshotAsync(ct)).Count;
        for (var i = 3; i < 12; i++)
        {
            created.Add(await auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = token, Name = $"k{i}" }, ct));
            await auth.Service.RevokeApiKeyAsync(new RevokeApiKeyRequest { Token = token, KeyId = created[^1].KeyId }, ct);
            auth.Time.Advance(TimeSpan.FromSeconds(1));
        }

        Assert.That((await auth.SnapshotAsync(ct)).Count, Is.EqualTo(entriesAtTheCap), "each key that gives way takes its record and hash entry with it");
        foreach (var key in created)
        {
            await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () => auth.Service.ValidateAsync(new ValidateRequest { ApiKey = key.ApiKey }, ct));
        }

        var list = await auth.Service.ListApiKeysAsync(new ListApiKeysRequest { Token = token }, ct);
        Assert.That(list.Keys.Select(k => k.Name), Is.EquivalentTo(new[] { "k9", "k10", "k11" }));
    }

    [Test, CancelAfter(10000)]
    public async Task CreateApiKey_AtTheMaximumWithOneRevoked_DropsOnlyTheOldestRevokedFromTheList(CancellationToken ct)
    {
        await using var auth = await AuthHarness.CreateAsync(o => o.MaxApiKeysPerUser = 3);
        var (_, _, token) = await auth.RegisterAndLoginAsync(ct);
        var keys = new List<CreateApiKeyResponse>();
        for (var i = 0; i < 3; i++)
        {
            keys.Add(await auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = token, Name = $"k{i}" }, ct));
        }

        await auth.Service.RevokeApiKeyAsync(new RevokeApiKeyRequest { Token = token, KeyId = keys[2].KeyId }, ct);
        auth.Time.Advance(TimeSpan.FromSeconds(1));
        await auth.Service.RevokeApiKeyAsync(new RevokeApiKeyRequest { Token = token, KeyId = keys[0].KeyId }, ct);

        await auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = token, Name = "new" }, ct);

        var list = await auth.Service.ListApiKeysAsync(new ListApiKeysRequest { Token = token }, ct);
        Assert.That(list.Keys.Select(k => k.Name), Is.EquivalentTo(new[] { "k0", "k1", "new" }), "k2, revoked first, gave way; k0, revoked later, is still listed");
    }

    [Test, CancelAfter(10000)]
    public async Task Validate_RefusesUnknownAndMalformedKeys(CancellationToken ct)
    {
        var (_, _, token) = await _auth.RegisterAndLoginAsync(ct);
        var real = await _auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = token, Name = "k" }, ct);
        var random = P2PInference.TestKit.TestSeed.CreateRandom();
        var candidates = new List<string>
        {
            ApiKeyService.GenerateKey(),
            real.ApiKey[..^1] + (real.ApiKey[^1] == 'z' ? 'y' : 'z'),
            real.ApiKey + "1",
            real.ApiKey[..^1],
            real.ApiKey.ToUpperInvariant(),
            real.ApiKey.Replace("p2pi_", "p2pj_", StringComparison.Ordinal),
            "p2pi_",
            "p2pi_" + new string('0', 44),
            "p2pi_" + new string('1', 1 << 20),
            " " + real.ApiKey,
            token,
        };
        for (var i = 0; i < 100; i++)
        {
            var chars = new char[random.Next(1, 80)];
            for (var j = 0; j < chars.Length; j++)
            {
                chars[j] = (char)random.Next(0, 0x3000);
            }

            candidates.Add(random.Next(2) == 0 ? new string(chars) : "p2pi_" + new string(chars));
        }

        foreach (var candidate in candidates)
        {
            await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () => _auth.Service.ValidateAsync(new ValidateRequest { ApiKey = candidate }, ct));
        }

        await AuthAssert.ThrowsAsync(AuthErrorCode.InvalidArgument, () => _auth.Service.ValidateAsync(new ValidateRequest { ApiKey = string.Empty }, ct));
        await AuthAssert.ThrowsAsync(AuthErrorCode.InvalidArgument, () => _auth.Service.ValidateAsync(new ValidateRequest(), ct));
        await AuthAssert.ThrowsAsync(AuthErrorCode.InvalidArgument, () => _auth.Service.ValidateAsync(null!, ct));
    }

    [Test]
    public void GenerateKey_MakesWellFormed_DistinctKeys()
    {
        var keys = Enumerable.Range(0, 200).Select(_ => ApiKeyService.GenerateKey()).ToList();
        Assert.That(keys, Is.Unique);
        Assert.That(keys.Select(ApiKeyService.IsWellFormed), Is.All.True);
        Assert.That(keys.Select(k => k.Length), Is.All.InRange(5 + 40, 5 + 44));
    }
}
