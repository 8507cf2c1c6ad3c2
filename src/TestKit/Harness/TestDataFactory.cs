using System.Globalization;

namespace P2PInference.TestKit.Harness;

/// <summary>
/// Test data from a seed: users, passwords, API-key-like strings, request ids, prompts, payloads. Each
/// call returns a value no earlier call on the same factory returned (a counter is part of every value),
/// and the same seed gives the same sequence, so a failing run replays. Each test makes its own
/// factory (or uses its <see cref="TestCluster.Data"/>): no shared users, no global state. Thread-safe.
/// </summary>
public sealed class TestDataFactory
{
    private const string Lower = "abcdefghijkmnopqrstuvwxyz";
    private const string Upper = "ABCDEFGHJKLMNPQRSTUVWXYZ";
    private const string Digits = "23456789";
    private const string Symbols = "!#$%&*+-=?@^_";
    private const string Base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

    private static readonly string[] Subjects =
        ["the tides", "a binary heap", "photosynthesis", "the Noise protocol", "a haiku about rain", "Kademlia routing",
         "sourdough bread", "the moons of Jupiter", "a sorting algorithm", "the French revolution", "gradient descent", "a lighthouse"];

    private static readonly string[] Asks =
        ["Explain", "Summarize", "Write a short poem about", "List three facts about", "Describe", "Compare two views of"];

    private static readonly string[] Names =
        ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Radia", "Ken", "Margaret", "Leslie", "Frances", "Tony"];

    private readonly object _gate = new();
    private readonly Random _random;
    private long _counter;

    /// <summary>A factory for <paramref name="seed"/>; <see cref="TestSeed.Choose"/> when null.</summary>
    public TestDataFactory(int? seed = null)
    {
        Seed = seed ?? TestSeed.Choose();
        _random = new Random(SeedDerivation.Int(Seed, "test-data"));
    }

    public int Seed { get; }

    /// <summary>How many values this factory has made.</summary>
    public long Count => Interlocked.Read(ref _counter);

    /// <summary>A new user with a unique email, a policy-compliant password and a display name.</summary>
    public TestUser User()
    {
        lock (_gate)
        {
            var n = Next();
            return new TestUser(EmailLocked(n), PasswordLocked(), $"{Names[_random.Next(Names.Length)]} {n}");
        }
    }

    /// <summary>A unique email: <c>user-&lt;n&gt;-&lt;seed&gt;@test.invalid</c> (<c>.invalid</c> never resolves, RFC 2606).</summary>
    public string Email()
    {
        lock (_gate) return EmailLocked(Next());
    }

    /// <summary>A 16-character password with upper and lower case letters, a digit and a symbol (random from the seed; a repeat is astronomically unlikely).</summary>
    public string Password()
    {
        lock (_gate)
        {
            Next();
            return PasswordLocked();
        }
    }

    /// <summary>An API-key-like string: <paramref name="prefix"/> then 40 base-62 characters, unique within the factory.</summary>
    public string ApiKey(string prefix = "p2pi_")
    {
        ArgumentNullException.ThrowIfNull(prefix);
        lock (_gate)
        {
            var n = Next();
            // The counter in base 62 ends the key, so keys differ even if the random part repeated.
            var tail = ToBase62(n);
            return prefix + RandomString(Base62, 40 - tail.Length) + tail;
        }
    }

    /// <summary>A request id shaped like a GUID, from the seed (not the system's GUID generator).</summary>
    public string RequestId()
    {
        lock (_gate)
        {
            var n = Next();
            Span<byte> bytes = stackalloc byte[16];
            _random.NextBytes(bytes);
            // The counter in the last bytes keeps ids unique regardless of the random part.
            System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(bytes[8..], n);
            return new Guid(bytes, bigEndian: true).ToString();
        }
    }

    /// <summary>A short natural-language prompt, unique within the factory.</summary>
    public string Prompt()
    {
        lock (_gate)
        {
            var n = Next();
            return $"{Asks[_random.Next(Asks.Length)]} {Subjects[_random.Next(Subjects.Length)]} (request {n}).";
        }
    }

    /// <summary>A unique name: <paramref name="prefix"/>-&lt;n&gt;-&lt;seed&gt;, e.g. for topics, models, keys.</summary>
    public string Name(string prefix = "name")
    {
        ArgumentException.ThrowIfNullOrEmpty(prefix);
        lock (_gate) return string.Create(CultureInfo.InvariantCulture, $"{prefix}-{Next()}-{Seed}");
    }

    /// <summary>
    /// <paramref name="size"/> seeded random bytes. From 8 bytes on, the first 8 hold a counter, so every
    /// payload differs from every other this factory made.
    /// </summary>
    public byte[] Payload(int size)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        lock (_gate)
        {
            var n = Next();
            var bytes = new byte[size];
            _random.NextBytes(bytes);
            if (size >= 8) System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(bytes, n);
            return bytes;
        }
    }

    /// <summary>A seeded <see cref="Random"/> of its own, for a helper that needs one; each call gives a different stream.</summary>
    public Random CreateRandom()
    {
        lock (_gate) return new Random(SeedDerivation.Int(Seed, "random", Next().ToString(CultureInfo.InvariantCulture)));
    }

    private long Next() => Interlocked.Increment(ref _counter);

    private string EmailLocked(long n) => string.Create(CultureInfo.InvariantCulture, $"user-{n}-{Seed}@test.invalid");

    private string PasswordLocked()
    {
        var chars = new char[16];
        chars[0] = Upper[_random.Next(Upper.Length)];
        chars[1] = Lower[_random.Next(Lower.Length)];
        chars[2] = Digits[_random.Next(Digits.Length)];
        chars[3] = Symbols[_random.Next(Symbols.Length)];
        const string all = Lower + Upper + Digits + Symbols;
        for (var i = 4; i < chars.Length; i++) chars[i] = all[_random.Next(all.Length)];
        _random.Shuffle(chars);
        return new string(chars);
    }

    private string RandomString(string alphabet, int length)
    {
        var chars = new char[length];
        for (var i = 0; i < length; i++) chars[i] = alphabet[_random.Next(alphabet.Length)];
        return new string(chars);
    }

    private static string ToBase62(long value)
    {
        Span<char> buffer = stackalloc char[12];
        var i = buffer.Length;
        do
        {
            buffer[--i] = Base62[(int)(value % 62)];
            value /= 62;
        }
        while (value > 0);
        return new string(buffer[i..]);
    }
}
