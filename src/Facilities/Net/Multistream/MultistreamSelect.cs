using System.Buffers;
using System.Text;
using P2PInference.Facilities.Encoding;

namespace P2PInference.Facilities.Net.Multistream;

/// <summary>
/// multistream-select 1.0: every message is a uvarint length, UTF-8 text and a trailing newline
/// counted in the length. Both sides open with <see cref="ProtocolId"/>; the dialer proposes
/// protocols one at a time and the listener echoes the one it accepts or answers "na".
/// </summary>
/// <remarks>
/// Reads are exact-length, so nothing after the last negotiation message is consumed: the caller
/// continues on the same stream with the chosen protocol's bytes. Negotiation failures are
/// <see cref="MultistreamException"/>s, including a stream that ends early
/// (<see cref="MultistreamFailure.StreamClosed"/>).
/// </remarks>
public static class MultistreamSelect
{
    public const string ProtocolId = "/multistream/1.0.0";

    /// <summary>The longest message accepted, newline included (go-multistream and js-libp2p use the same bound).</summary>
    public const int MaxMessageLength = 1024;

    /// <summary>How many proposals (and "ls" requests) a listener answers before giving up on the dialer.</summary>
    public const int MaxProposals = 64;

    /// <summary>The longest "ls" answer a dialer accepts from a listener.</summary>
    public const int MaxListLength = 64 * 1024;

    internal const string NotAvailable = "na";
    internal const string List = "ls";

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    // Bounds the ids kept for decoding: a process speaks a few dozen protocols, and ids come only from
    // this process (proposals it makes, protocols its hosts handle), never from the wire.
    private const int MaxKnownIds = 256;
    private static readonly Lock KnownIdsGate = new();
    // Copied on write: decoding reads it without a lock.
    private static KnownId[] s_knownIds = [new(ProtocolId), new(NotAvailable), new(List)];

    /// <summary>
    /// Dialer side: proposes <paramref name="protocols"/> in order and returns the first the
    /// listener accepts. The header and the first proposal go out in a single write, saving a
    /// round trip.
    /// </summary>
    /// <exception cref="MultistreamException">
    /// <see cref="MultistreamFailure.NoProtocolSupported"/> when every proposal got "na"; other reasons when the listener misbehaves.
    /// </exception>
    public static Task<string> SelectAsync(Stream stream, IReadOnlyList<string> protocols, CancellationToken cancellationToken) =>
        stream is not null && protocols is { Count: 1 } ? SelectOneAsync(stream, protocols[0], cancellationToken) : SelectManyAsync(stream, protocols, cancellationToken);

    /// <summary>
    /// <see cref="SelectAsync"/> of one protocol (a connection's upgrades, a stream's), whose dialer then waits for the
    /// listener in one async frame (the reader's), not two. Invalid arguments fault the task, as they do there.
    /// </summary>
    private static Task<string> SelectOneAsync(Stream stream, string protocol, CancellationToken cancellationToken)
    {
        try
        {
            ValidateProtocolId(protocol, "protocols");
        }
        catch (ArgumentException e)
        {
            return Task.FromException<string>(e);
        }
        var write = WriteMessagesAsync(stream, ProtocolId, protocol, cancellationToken);
        if (!write.IsCompletedSuccessfully) return AnswerAfterAsync(write, stream, protocol, cancellationToken);
        var answer = ReadMessageAsync(stream, afterHeader: true, answering: protocol, lazy: false, cancellationToken);
        return answer.IsCompletedSuccessfully ? Completed(answer.Result) : answer.AsTask();
    }

    private static async Task<string> AnswerAfterAsync(ValueTask write, Stream stream, string protocol, CancellationToken cancellationToken)
    {
        await write;
        return await ReadMessageAsync(stream, afterHeader: true, answering: protocol, lazy: false, cancellationToken);
    }

    private static async Task<string> SelectManyAsync(Stream? stream, IReadOnlyList<string>? protocols, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(protocols);
        if (protocols.Count == 0) throw new ArgumentException("propose at least one protocol", nameof(protocols));
        foreach (var protocol in protocols) ValidateProtocolId(protocol, nameof(protocols));

        await WriteMessagesAsync(stream, ProtocolId, protocols[0], cancellationToken);
        for (var i = 0; i < protocols.Count; i++)
        {
            if (i > 0)
                await WriteMessagesAsync(stream, protocols[i], null, cancellationToken);
            // The listener's header comes before its first answer.
            var answer = await ReadMessageAsync(stream, afterHeader: i == 0, answering: null, lazy: false, cancellationToken);
            if (string.Equals(answer, protocols[i], StringComparison.Ordinal)) return answer;
            if (answer != NotAvailable)
                throw new MultistreamException(MultistreamFailure.MalformedMessage, $"listener answered '{answer}' to the proposal '{protocols[i]}'");
        }
        throw new MultistreamException(MultistreamFailure.NoProtocolSupported, $"the listener supports none of: {string.Join(", ", protocols)}");
    }

    /// <summary>
    /// Bytes <see cref="WriteLazyProposal"/> needs for <paramref name="protocol"/>.
    /// </summary>
    public static int GetLazyProposalLength(string protocol)
    {
        ValidateProtocolId(protocol, nameof(protocol));
        return EncodedLength(ProtocolId) + EncodedLength(protocol);
    }

    /// <summary>
    /// Dialer side of lazy negotiation (a single protocol): the header and the proposal, to be sent
    /// in one write together with the protocol's first bytes, without waiting for the listener. The
    /// dialer must then call <see cref="ReadLazyAnswerAsync"/> before it reads anything else.
    /// Returns the bytes written; <paramref name="destination"/> holds <see cref="GetLazyProposalLength"/>.
    /// </summary>
    public static int WriteLazyProposal(Span<byte> destination, string protocol)
    {
        var length = GetLazyProposalLength(protocol);
        if (destination.Length < length) throw new ArgumentException($"the proposal needs {length} bytes", nameof(destination));
        var written = Encode(destination, ProtocolId);
        return written + Encode(destination[written..], protocol);
    }

    /// <summary>
    /// Dialer side of lazy negotiation: reads the listener's header and its answer to the proposal
    /// that <see cref="WriteLazyProposal"/> made, within <paramref name="timeout"/> on <paramref name="time"/>.
    /// </summary>
    /// <exception cref="MultistreamException">
    /// <see cref="MultistreamFailure.NoProtocolSupported"/> when the listener answered "na",
    /// <see cref="MultistreamFailure.MalformedMessage"/> when it echoed another protocol,
    /// <see cref="MultistreamFailure.TimedOut"/> when the answer did not come in time; other reasons when the listener misbehaves.
    /// </exception>
    public static async Task ReadLazyAnswerAsync(Stream stream, string protocol, TimeSpan timeout, TimeProvider time, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(time);
        ValidateProtocolId(protocol, nameof(protocol));
        using var timer = new CancellationTokenSource(timeout, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timer.Token);
        try
        {
            await ReadLazyAnswerAsync(stream, protocol, linked.Token);
        }
        catch (OperationCanceledException e) when (timer.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw new MultistreamException(MultistreamFailure.TimedOut, $"the listener did not answer the proposal '{protocol}' within {timeout}", e);
        }
    }

    /// <summary>The answer to a lazy proposal, for a caller whose token already bounds the wait (a connection upgrade).</summary>
    internal static ValueTask ReadLazyAnswerAsync(Stream stream, string protocol, CancellationToken cancellationToken)
    {
        // The answer is checked by the reader itself: a dialer waiting for it waits in one async frame, not two.
        var answer = ReadMessageAsync(stream, afterHeader: true, answering: protocol, lazy: true, cancellationToken);
        return answer.IsCompletedSuccessfully ? ValueTask.CompletedTask : new ValueTask(answer.AsTask());
    }

    /// <summary>
    /// Listener side: answers proposals until one is in <paramref name="supported"/> and returns it.
    /// A set (<see cref="IReadOnlySet{T}"/> or <see cref="ISet{T}"/>) is looked up with its own
    /// comparer; any other collection is searched with ordinal comparison.
    /// </summary>
    /// <exception cref="MultistreamException">The dialer broke the protocol, proposed too often, or left.</exception>
    public static Task<string> HandleAsync(Stream stream, IReadOnlyCollection<string> supported, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(supported);
        Func<string, bool> isSupported = supported switch
        {
            IReadOnlySet<string> set => set.Contains,
            ISet<string> set => set.Contains,
            _ => proposal => supported.Contains(proposal, StringComparer.Ordinal),
        };
        return HandleAsync(stream, isSupported, supported, cancellationToken);
    }

    /// <summary>
    /// Listener side with a match function (e.g. a protocol registry): a proposal is accepted when
    /// <paramref name="isSupported"/> says so; "ls" is answered with <paramref name="listed"/>.
    /// </summary>
    /// <inheritdoc cref="HandleAsync(Stream, IReadOnlyCollection{string}, CancellationToken)"/>
    public static Task<string> HandleAsync(Stream stream, Func<string, bool> isSupported, IEnumerable<string> listed, CancellationToken cancellationToken) =>
        HandleAsync(stream, isSupported, listed, dataAvailable: null, cancellationToken);

    /// <summary>
    /// Listener side that answers in fewer writes when the dialer spoke first: while
    /// <paramref name="dataAvailable"/> says the dialer's header and proposal are already here (a lazy
    /// dialer sends them with its first data), they are read first and our header leaves together with
    /// the answer. Otherwise our header goes out at once, as in the other overloads.
    /// </summary>
    /// <inheritdoc cref="HandleAsync(Stream, IReadOnlyCollection{string}, CancellationToken)"/>
    public static Task<string> HandleAsync(Stream stream, Func<string, bool> isSupported, IEnumerable<string> listed, Func<bool>? dataAvailable,
        CancellationToken cancellationToken) =>
        HandleAsync(stream, isSupported, listed, dataAvailable, holdAnswer: null, cancellationToken);

    /// <summary>
    /// As the overload without <paramref name="holdAnswer"/>; when the accepted proposal is followed by
    /// data already here (a lazy dialer sent its first request with it, so it is not waiting for our
    /// answer), the answer is handed to <paramref name="holdAnswer"/> instead of written, for the
    /// stream to send with the protocol's first bytes. It returns false to have it written now.
    /// </summary>
    /// <inheritdoc cref="HandleAsync(Stream, IReadOnlyCollection{string}, CancellationToken)"/>
    public static Task<string> HandleAsync(Stream stream, Func<string, bool> isSupported, IEnumerable<string> listed, Func<bool>? dataAvailable,
        Func<ReadOnlyMemory<byte>, bool>? holdAnswer, CancellationToken cancellationToken)
    {
        var negotiation = HandleCoreAsync(stream, isSupported, listed, dataAvailable, holdAnswer, cancellationToken);
        // A lazy dialer's proposal is here with its stream, so most negotiations end at once: with a protocol
        // this process handles, they share one finished task instead of allocating one each.
        return negotiation.IsCompletedSuccessfully ? Completed(negotiation.Result) : negotiation.AsTask();
    }

    private static async ValueTask<string> HandleCoreAsync(Stream stream, Func<string, bool> isSupported, IEnumerable<string> listed,
        Func<bool>? dataAvailable, Func<ReadOnlyMemory<byte>, bool>? holdAnswer, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(isSupported);
        ArgumentNullException.ThrowIfNull(listed);

        // Our header goes out before we wait for anything, as the spec allows: a dialer that waits
        // for the listener's header first can then never deadlock against us. Only bytes already
        // here may be read before it.
        var headerSent = false;
        if (dataAvailable?.Invoke() != true)
        {
            await WriteMessagesAsync(stream, ProtocolId, null, cancellationToken);
            headerSent = true;
        }
        CheckHeader(await ReadMessageAsync(stream, afterHeader: false, answering: null, lazy: false, cancellationToken));
        var refused = false;
        for (var attempt = 0; ; attempt++)
        {
            if (attempt == MaxProposals)
                throw new MultistreamException(MultistreamFailure.TooManyAttempts, $"the dialer made more than {MaxProposals} proposals");
            if (!headerSent && dataAvailable?.Invoke() != true)
            {
                await WriteMessagesAsync(stream, ProtocolId, null, cancellationToken);
                headerSent = true;
            }
            string proposal;
            try
            {
                proposal = await ReadMessageAsync(stream, afterHeader: false, answering: null, lazy: false, cancellationToken);
            }
            catch (MultistreamException e) when (refused && e.Reason is MultistreamFailure.MalformedMessage or MultistreamFailure.TooLong)
            {
                // A lazy dialer's data follows the proposal we refused: the negotiation ended with our "na".
                throw new MultistreamException(MultistreamFailure.NoProtocolSupported, "the dialer went on after its proposal was refused", e);
            }
            var header = headerSent ? null : ProtocolId;
            headerSent = true;
            if (proposal == List)
            {
                if (header is not null) await WriteMessagesAsync(stream, header, null, cancellationToken);
                await WriteListAsync(stream, listed, cancellationToken);
                continue;
            }
            var answer = proposal != NotAvailable && isSupported(proposal) ? proposal : NotAvailable;
            if (answer != NotAvailable && holdAnswer is not null && dataAvailable?.Invoke() == true && TryHoldMessages(holdAnswer, header ?? answer, header is null ? null : answer))
                return proposal;
            if (header is null) await WriteMessagesAsync(stream, answer, null, cancellationToken);
            else await WriteMessagesAsync(stream, header, answer, cancellationToken);
            if (answer != NotAvailable) return proposal;
            refused = true;
        }
    }

    /// <summary>
    /// Dialer side: asks the listener which protocols it supports ("ls"). The stream is left in
    /// negotiation; it is meant for a query, closed afterwards.
    /// </summary>
    public static async Task<IReadOnlyList<string>> ListAsync(Stream stream, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        await WriteMessagesAsync(stream, ProtocolId, List, cancellationToken);
        CheckHeader(await ReadMessageAsync(stream, afterHeader: false, answering: null, lazy: false, cancellationToken));
        var body = await ReadRawAsync(stream, MaxListLength, cancellationToken);
        if (body.Length == 0 || body[^1] != (byte)'\n')
            throw new MultistreamException(MultistreamFailure.MalformedMessage, "the protocol list lacks its trailing newline");
        // The answer nests one length-prefixed, newline-terminated message per protocol.
        var protocols = new List<string>();
        var rest = body.AsSpan(0, body.Length - 1);
        while (!rest.IsEmpty)
        {
            ulong length;
            int consumed;
            try
            {
                if (!Varint.TryRead(rest, out length, out consumed))
                    throw new MultistreamException(MultistreamFailure.MalformedMessage, "the protocol list is truncated");
            }
            catch (FormatException e)
            {
                throw new MultistreamException(MultistreamFailure.MalformedMessage, "invalid length in the protocol list", e);
            }
            rest = rest[consumed..];
            if (length > (ulong)rest.Length)
                throw new MultistreamException(MultistreamFailure.MalformedMessage, "the protocol list is truncated");
            protocols.Add(DecodeMessage(rest[..(int)length]));
            rest = rest[(int)length..];
        }
        return protocols;
    }

    private static void CheckHeader(string header)
    {
        if (header != ProtocolId)
            throw new MultistreamException(MultistreamFailure.WrongHeader, $"expected '{ProtocolId}', got '{header}'");
    }

    /// <summary>
    /// One message, read in one method rather than through the general length-prefixed reader: a
    /// negotiation message is a few bytes, and a stream reset mid-read (a connection closed right
    /// after it opened) is then rethrown through one frame instead of six. With <paramref name="afterHeader"/>,
    /// the message after the header, which is read and checked first: a dialer waiting for the
    /// listener's header and answer then waits in one frame, not two. With <paramref name="answering"/>, the
    /// message is the listener's answer to that proposal, the only one made (<paramref name="lazy"/> or not):
    /// returned when it accepts it, else the failure is thrown here.
    /// </summary>
    private static async ValueTask<string> ReadMessageAsync(Stream stream, bool afterHeader, string? answering, bool lazy, CancellationToken cancellationToken)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(MaxMessageLength);
        try
        {
            for (var header = afterHeader; ; header = false)
            {
                // The varint length, a byte at a time so nothing past the message is consumed.
                var prefix = default(VarintAccumulator);
                while (true)
                {
                    if (await stream.ReadAsync(buffer.AsMemory(0, 1), cancellationToken) == 0)
                    {
                        if (prefix.Count == 0) throw new MultistreamException(MultistreamFailure.StreamClosed, "the stream ended during negotiation");
                        throw new MultistreamException(MultistreamFailure.StreamClosed, "the stream ended inside a message");
                    }
                    if (!prefix.Add(buffer[0], out var error)) continue;
                    if (error is not null) throw new MultistreamException(MultistreamFailure.MalformedMessage, "invalid length prefix: " + error);
                    break;
                }
                var length = prefix.Value;
                if (length > MaxMessageLength)
                    throw new MultistreamException(MultistreamFailure.TooLong, $"message of {length} bytes exceeds the limit of {MaxMessageLength}");
                var body = buffer.AsMemory(0, (int)length);
                for (var filled = 0; filled < body.Length;)
                {
                    var read = await stream.ReadAsync(body[filled..], cancellationToken);
                    if (read == 0) throw new MultistreamException(MultistreamFailure.StreamClosed, "the stream ended inside a message");
                    filled += read;
                }
                var message = DecodeMessage(body.Span);
                if (header)
                {
                    CheckHeader(message);
                    continue;
                }
                if (answering is null || string.Equals(message, answering, StringComparison.Ordinal)) return message;
                if (message == NotAvailable)
                {
                    throw new MultistreamException(MultistreamFailure.NoProtocolSupported,
                        lazy ? $"the listener does not support {answering}" : $"the listener supports none of: {answering}");
                }
                throw new MultistreamException(MultistreamFailure.MalformedMessage, $"listener answered '{message}' to the proposal '{answering}'");
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static async ValueTask<byte[]> ReadRawAsync(Stream stream, int maxLength, CancellationToken cancellationToken)
    {
        byte[]? bytes;
        try
        {
            bytes = await LengthPrefixedMessage.ReadAsync(stream, maxLength, cancellationToken);
        }
        catch (MessageTooLargeException e)
        {
            throw new MultistreamException(MultistreamFailure.TooLong, e.Message, e);
        }
        catch (MalformedMessageException e)
        {
            throw new MultistreamException(MultistreamFailure.MalformedMessage, e.Message, e);
        }
        catch (EndOfStreamException e)
        {
            throw new MultistreamException(MultistreamFailure.StreamClosed, "the stream ended inside a message", e);
        }
        return bytes ?? throw new MultistreamException(MultistreamFailure.StreamClosed, "the stream ended during negotiation");
    }

    /// <summary>
    /// Lets decoding return <paramref name="protocol"/> itself for a message that spells it, instead of
    /// a new string per negotiation. Protocols this process proposes are known already.
    /// </summary>
    internal static void AddKnownId(string protocol)
    {
        ArgumentNullException.ThrowIfNull(protocol);
        var known = Volatile.Read(ref s_knownIds);
        if (IsKnown(known, protocol) || known.Length >= MaxKnownIds) return;
        byte[] utf8;
        try
        {
            utf8 = StrictUtf8.GetBytes(protocol);
        }
        catch (EncoderFallbackException)
        {
            return; // not UTF-8 text, so no message spells it
        }
        lock (KnownIdsGate)
        {
            known = s_knownIds;
            if (IsKnown(known, protocol) || known.Length >= MaxKnownIds) return;
            Volatile.Write(ref s_knownIds, [.. known, new KnownId(protocol, utf8)]);
        }
    }

    /// <summary>A finished task of <paramref name="protocol"/>: the known id's own when it is one (decoding returned that very string).</summary>
    private static Task<string> Completed(string protocol)
    {
        foreach (var id in Volatile.Read(ref s_knownIds))
            if (ReferenceEquals(id.Text, protocol)) return id.Completed;
        return Task.FromResult(protocol);
    }

    private static bool IsKnown(KnownId[] known, string protocol)
    {
        foreach (var id in known)
            if (string.Equals(id.Text, protocol, StringComparison.Ordinal)) return true;
        return false;
    }

    private static string DecodeMessage(ReadOnlySpan<byte> message)
    {
        if (message.IsEmpty || message[^1] != (byte)'\n')
            throw new MultistreamException(MultistreamFailure.MalformedMessage, "message lacks its trailing newline");
        var text = message[..^1];
        // Negotiations name the same few protocols over and over; a known id's bytes are valid UTF-8.
        foreach (var id in Volatile.Read(ref s_knownIds))
            if (text.SequenceEqual(id.Utf8)) return id.Text;
        try
        {
            return StrictUtf8.GetString(text);
        }
        catch (DecoderFallbackException e)
        {
            throw new MultistreamException(MultistreamFailure.MalformedMessage, "message is not UTF-8", e);
        }
    }

    private static void ValidateProtocolId(string protocol, string parameterName)
    {
        ArgumentNullException.ThrowIfNull(protocol, parameterName);
        if (protocol.Length == 0 || protocol.Contains('\n', StringComparison.Ordinal))
            throw new ArgumentException($"'{protocol}' is not a valid protocol id", parameterName);
        if (protocol is NotAvailable or List)
            throw new ArgumentException($"'{protocol}' is reserved by multistream-select", parameterName);
        if (StrictUtf8.GetByteCount(protocol) + 1 > MaxMessageLength)
            throw new ArgumentException($"protocol id '{protocol}' is longer than {MaxMessageLength - 1} bytes", parameterName);
        AddKnownId(protocol);
    }

    private static int EncodedLength(string text)
    {
        var length = StrictUtf8.GetByteCount(text) + 1;
        return Varint.GetLength((ulong)length) + length;
    }

    private static int Encode(Span<byte> destination, string text)
    {
        var length = StrictUtf8.GetByteCount(text) + 1;
        var offset = Varint.Write(destination, (ulong)length);
        offset += StrictUtf8.GetBytes(text, destination[offset..]);
        destination[offset++] = (byte)'\n';
        return offset;
    }

    private sealed class KnownId(string text, byte[] utf8)
    {
        public KnownId(string text)
            : this(text, StrictUtf8.GetBytes(text))
        {
        }

        public string Text { get; } = text;
        public byte[] Utf8 { get; } = utf8;
        public Task<string> Completed { get; } = Task.FromResult(text);
    }

    private static bool TryHoldMessages(Func<ReadOnlyMemory<byte>, bool> hold, string first, string? second)
    {
        var total = EncodedLength(first) + (second is null ? 0 : EncodedLength(second));
        var buffer = ArrayPool<byte>.Shared.Rent(total);
        try
        {
            var written = Encode(buffer, first);
            if (second is not null) written += Encode(buffer.AsSpan(written), second);
            return hold(buffer.AsMemory(0, written));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Writes one or two messages with a single write call, so they travel together.</summary>
    private static async ValueTask WriteMessagesAsync(Stream stream, string first, string? second, CancellationToken cancellationToken)
    {
        var total = EncodedLength(first) + (second is null ? 0 : EncodedLength(second));
        var buffer = ArrayPool<byte>.Shared.Rent(total);
        try
        {
            var written = Encode(buffer, first);
            if (second is not null) written += Encode(buffer.AsSpan(written), second);
            await stream.WriteAsync(buffer.AsMemory(0, written), cancellationToken);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        await stream.FlushAsync(cancellationToken);
    }

    private static async ValueTask WriteListAsync(Stream stream, IEnumerable<string> listed, CancellationToken cancellationToken)
    {
        var protocols = listed.ToArray();
        var inner = 1 + protocols.Sum(EncodedLength);
        var total = Varint.GetLength((ulong)inner) + inner;
        var buffer = ArrayPool<byte>.Shared.Rent(total);
        try
        {
            var written = Varint.Write(buffer, (ulong)inner);
            foreach (var protocol in protocols) written += Encode(buffer.AsSpan(written), protocol);
            buffer[written++] = (byte)'\n';
            await stream.WriteAsync(buffer.AsMemory(0, written), cancellationToken);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        await stream.FlushAsync(cancellationToken);
    }
}
