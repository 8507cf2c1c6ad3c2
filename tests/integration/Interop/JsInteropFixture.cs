namespace P2PInference.Tests.Integration.Interop;

/// <summary>
/// What an interop fixture with js-libp2p peers and hosts of ours needs around each test: a time
/// limit, the js peers' stderr when the test failed, and everything stopped afterwards (js peers
/// first, then what the test owns, last made first).
/// </summary>
public abstract class JsInteropFixture
{
    private CancellationTokenSource _timeout = null!;
    private readonly List<IAsyncDisposable> _owned = [];
    private readonly List<JsPeer> _js = [];

    protected CancellationToken Token => _timeout.Token;

    [SetUp]
    public void StartTimeLimit() => _timeout = new CancellationTokenSource(TimeSpan.FromSeconds(90));

    [TearDown]
    public async Task StopAsync()
    {
        if (TestContext.CurrentContext.Result.Outcome.Status == NUnit.Framework.Interfaces.TestStatus.Failed)
            foreach (var js in _js) await TestContext.Out.WriteLineAsync($"js-libp2p {js.PeerId} stderr:\n" + js.Diagnostics);
        foreach (var js in _js) await js.DisposeAsync();
        _js.Clear();
        for (var i = _owned.Count - 1; i >= 0; i--) await _owned[i].DisposeAsync();
        _owned.Clear();
        _timeout.Dispose();
    }

    private protected async Task<JsPeer> StartJsAsync(params string[] arguments)
    {
        var js = await JsPeer.StartAsync(arguments, Token);
        _js.Add(js);
        return js;
    }

    /// <summary>Stops <paramref name="owned"/> after the test, before what was owned earlier.</summary>
    protected T Own<T>(T owned)
        where T : IAsyncDisposable
    {
        _owned.Add(owned);
        return owned;
    }
}
