using System.Buffers;

namespace P2PInference.Facilities.Net.Multistream;

/// <summary>
/// Dialer side of lazy negotiation for a whole connection layer: the header and the proposal of
/// one protocol travel with the first write (or on <see cref="SendProposalAsync"/>), and the
/// listener's answer is read, and checked, before the first read returns anything. The protocol's
/// own first message thus costs no round trip of its own.
/// </summary>
/// <remarks>
/// Only for a single protocol the listener is known to speak: after a refusal the protocol's bytes
/// already sent are garbage to the listener, which then closes. The refusal surfaces on the first
/// read as a <see cref="MultistreamException"/>. One read and one write may run at the same time
/// once the proposal is out.
/// </remarks>
internal sealed class MultistreamLazyStream : Stream
{
    private readonly Stream _inner;
    private readonly string _protocol;
    private readonly TimeSpan _answerTimeout;
    private readonly TimeProvider? _time;
    private bool _proposalSent;
    private bool _answerRead;

    /// <param name="answerTimeout">How long the first read waits for the answer; infinite when the caller bounds the whole exchange.</param>
    /// <param name="time">The clock of <paramref name="answerTimeout"/>; null for no bound of its own.</param>
    public MultistreamLazyStream(Stream inner, string protocol, TimeSpan answerTimeout = default, TimeProvider? time = null)
    {
        _inner = inner;
        _protocol = protocol;
        _answerTimeout = answerTimeout;
        _time = time;
        // Validates the protocol id before anything is written.
        MultistreamSelect.GetLazyProposalLength(protocol);
    }

    public override bool CanRead => _inner.CanRead;
    public override bool CanWrite => _inner.CanWrite;
    public override bool CanSeek => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();

    /// <summary>Sends the proposal now, alone, for a protocol whose dialer may not write first.</summary>
    public ValueTask SendProposalAsync(CancellationToken cancellationToken) =>
        _proposalSent ? ValueTask.CompletedTask : WriteWithProposalAsync(ReadOnlyMemory<byte>.Empty, cancellationToken);

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        _answerRead ? _inner.ReadAsync(buffer, cancellationToken) : ReadAfterAnswerAsync(buffer, cancellationToken);

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException("lazy negotiation reads asynchronously");

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) =>
        _proposalSent ? _inner.WriteAsync(buffer, cancellationToken) : WriteWithProposalAsync(buffer, cancellationToken);

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException("lazy negotiation writes asynchronously");

    public override Task FlushAsync(CancellationToken cancellationToken) => _inner.FlushAsync(cancellationToken);

    public override void Flush() => _inner.Flush();

    private async ValueTask WriteWithProposalAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        _proposalSent = true;
        var proposalLength = MultistreamSelect.GetLazyProposalLength(_protocol);
        var buffer = ArrayPool<byte>.Shared.Rent(proposalLength + data.Length);
        try
        {
            var written = MultistreamSelect.WriteLazyProposal(buffer, _protocol);
            data.Span.CopyTo(buffer.AsSpan(written));
            await _inner.WriteAsync(buffer.AsMemory(0, written + data.Length), cancellationToken);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        if (data.IsEmpty) await _inner.FlushAsync(cancellationToken);
    }

    private async ValueTask<int> ReadAfterAnswerAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        if (!_proposalSent) throw new InvalidOperationException("the proposal goes out with the first write, before the first read");
        if (_time is null) await MultistreamSelect.ReadLazyAnswerAsync(_inner, _protocol, cancellationToken);
        else await MultistreamSelect.ReadLazyAnswerAsync(_inner, _protocol, _answerTimeout, _time, cancellationToken);
        _answerRead = true;
        return await _inner.ReadAsync(buffer, cancellationToken);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _inner.Dispose();
        base.Dispose(disposing);
    }

    public override ValueTask DisposeAsync()
    {
        GC.SuppressFinalize(this);
        return _inner.DisposeAsync();
    }
}
