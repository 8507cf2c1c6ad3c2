using System.Text;

namespace P2PInference.Tests.Integration.Engines;

/// <summary>
/// Writes a tiny but valid GGUF (version 3) llama-architecture model, so the llamasharp engine can
/// be tested without downloading weights: a SentencePiece-style vocabulary of a few words (with
/// every prefix, so the tokenizer's merges reach them), the 256 byte tokens, and random seeded F32
/// weights. The embeddings are large and each layer's weights small, so the model all but repeats
/// its last token: predictable enough to test streaming, stop sequences and limits.
/// </summary>
/// <remarks>Written from the GGUF specification (ggml docs/gguf.md) and llama.cpp's tensor names.</remarks>
internal static class TinyGguf
{
    public const int EmbeddingLength = 64;
    public const int HeadCount = 4;
    public const int FeedForwardLength = 128;
    public const int BlockCount = 2;
    public const int TrainedContextLength = 256;
    public const int Alignment = 32;

    /// <summary>Whole words of the vocabulary; "▁" marks a word start as in SentencePiece.</summary>
    public static readonly string[] Words = ["hello", "world", "peer", "network", "token", "stop"];

    private const string WordStart = "\u2581";

    private enum ValueType : uint
    {
        UInt32 = 4,
        Int32 = 5,
        Float32 = 6,
        Bool = 7,
        String = 8,
        Array = 9,
    }

    /// <summary>The vocabulary: unknown, begin, end, the 256 bytes, then pieces (type 1 normal, 2 unknown, 3 control, 6 byte).</summary>
    public static (List<string> Tokens, List<float> Scores, List<int> Types) Vocabulary()
    {
        var tokens = new List<string> { "<unk>", "<s>", "</s>" };
        var types = new List<int> { 2, 3, 3 };
        var scores = new List<float> { 0, 0, 0 };
        for (var b = 0; b < 256; b++)
        {
            tokens.Add($"<0x{b:X2}>");
            types.Add(6);
            scores.Add(0);
        }
        var pieces = new List<string> { WordStart, ".", ",", "!", "?" };
        pieces.AddRange("abcdefghijklmnopqrstuvwxyz".Select(c => c.ToString()));
        foreach (var word in Words)
        {
            for (var length = 1; length <= word.Length; length++) pieces.Add(WordStart + word[..length]);
        }
        foreach (var piece in pieces.Distinct())
        {
            tokens.Add(piece);
            types.Add(1);
            // Longer pieces score higher, so the tokenizer prefers whole words.
            scores.Add(-100f + piece.Length);
        }
        return (tokens, scores, types);
    }

    /// <summary>Writes the model to <paramref name="path"/>; the same seed writes the same bytes.</summary>
    public static void Write(string path, int seed = 1, string? chatTemplate = null)
    {
        var (tokens, scores, types) = Vocabulary();
        var vocabularySize = tokens.Count;
        var random = new Random(seed);

        var tensors = new List<(string Name, long[] Shape, float[] Data)>
        {
            ("token_embd.weight", [EmbeddingLength, vocabularySize], Gaussian(random, EmbeddingLength * vocabularySize, 1.0)),
            ("output_norm.weight", [EmbeddingLength], Ones(EmbeddingLength)),
        };
        for (var block = 0; block < BlockCount; block++)
        {
            tensors.Add(($"blk.{block}.attn_norm.weight", [EmbeddingLength], Ones(EmbeddingLength)));
            foreach (var name in new[] { "attn_q", "attn_k", "attn_v", "attn_output" })
                tensors.Add(($"blk.{block}.{name}.weight", [EmbeddingLength, EmbeddingLength], Gaussian(random, EmbeddingLength * EmbeddingLength, 0.01)));
            tensors.Add(($"blk.{block}.ffn_norm.weight", [EmbeddingLength], Ones(EmbeddingLength)));
            tensors.Add(($"blk.{block}.ffn_gate.weight", [EmbeddingLength, FeedForwardLength], Gaussian(random, EmbeddingLength * FeedForwardLength, 0.01)));
            tensors.Add(($"blk.{block}.ffn_up.weight", [EmbeddingLength, FeedForwardLength], Gaussian(random, EmbeddingLength * FeedForwardLength, 0.01)));
            tensors.Add(($"blk.{block}.ffn_down.weight", [FeedForwardLength, EmbeddingLength], Gaussian(random, FeedForwardLength * EmbeddingLength, 0.01)));
        }
        // No output.weight: llama.cpp then ties the output to token_embd, which makes the model repeat its last token.

        using var file = File.Create(path);
        using var writer = new BinaryWriter(file, Encoding.UTF8, leaveOpen: true);
        var metadata = new List<Action<BinaryWriter>>
        {
            w => KeyString(w, "general.architecture", "llama"),
            w => KeyString(w, "general.name", "tiny-test-llama"),
            w => KeyUInt32(w, "general.alignment", Alignment),
            w => KeyUInt32(w, "llama.context_length", TrainedContextLength),
            w => KeyUInt32(w, "llama.embedding_length", EmbeddingLength),
            w => KeyUInt32(w, "llama.block_count", BlockCount),
            w => KeyUInt32(w, "llama.feed_forward_length", FeedForwardLength),
            w => KeyUInt32(w, "llama.attention.head_count", HeadCount),
            w => KeyUInt32(w, "llama.attention.head_count_kv", HeadCount),
            w => KeyUInt32(w, "llama.rope.dimension_count", EmbeddingLength / HeadCount),
            w => KeyFloat32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f),
            w => KeyString(w, "tokenizer.ggml.model", "llama"),
            w => KeyArray(w, "tokenizer.ggml.tokens", ValueType.String, tokens.Count, i => WriteString(w, tokens[i])),
            w => KeyArray(w, "tokenizer.ggml.scores", ValueType.Float32, scores.Count, i => w.Write(scores[i])),
            w => KeyArray(w, "tokenizer.ggml.token_type", ValueType.Int32, types.Count, i => w.Write(types[i])),
            w => KeyUInt32(w, "tokenizer.ggml.unknown_token_id", 0),
            w => KeyUInt32(w, "tokenizer.ggml.bos_token_id", 1),
            w => KeyUInt32(w, "tokenizer.ggml.eos_token_id", 2),
            w => KeyBool(w, "tokenizer.ggml.add_bos_token", true),
        };
        if (chatTemplate is not null) metadata.Add(w => KeyString(w, "tokenizer.chat_template", chatTemplate));

        writer.Write("GGUF"u8);
        writer.Write(3u);
        writer.Write((ulong)tensors.Count);
        writer.Write((ulong)metadata.Count);
        foreach (var write in metadata) write(writer);

        ulong offset = 0;
        foreach (var (name, shape, data) in tensors)
        {
            WriteString(writer, name);
            writer.Write((uint)shape.Length);
            foreach (var dimension in shape) writer.Write((ulong)dimension);
            writer.Write(0u); // GGML_TYPE_F32
            writer.Write(offset);
            offset = AlignUp(offset + (ulong)data.Length * sizeof(float));
        }
        Pad(writer);
        foreach (var (_, _, data) in tensors)
        {
            foreach (var value in data) writer.Write(value);
            Pad(writer);
        }
    }

    private static ulong AlignUp(ulong value) => (value + Alignment - 1) / Alignment * Alignment;

    private static void Pad(BinaryWriter writer)
    {
        writer.Flush();
        var position = (ulong)writer.BaseStream.Position;
        for (var i = position; i < AlignUp(position); i++) writer.Write((byte)0);
    }

    private static float[] Ones(int count) => Enumerable.Repeat(1f, count).ToArray();

    private static float[] Gaussian(Random random, int count, double scale)
    {
        var values = new float[count];
        for (var i = 0; i < count; i++)
        {
            // Box-Muller: two uniforms to one standard normal.
            var u1 = 1.0 - random.NextDouble();
            var u2 = random.NextDouble();
            values[i] = (float)(scale * Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
        return values;
    }

    private static void WriteString(BinaryWriter writer, string value)
    {
        var bytes = Encoding.UTF8.GetBytes(value);
        writer.Write((ulong)bytes.Length);
        writer.Write(bytes);
    }

    private static void Key(BinaryWriter writer, string key, ValueType type)
    {
        WriteString(writer, key);
        writer.Write((uint)type);
    }

    private static void KeyString(BinaryWriter writer, string key, string value)
    {
        Key(writer, key, ValueType.String);
        WriteString(writer, value);
    }

    private static void KeyUInt32(BinaryWriter writer, string key, uint value)
    {
        Key(writer, key, ValueType.UInt32);
        writer.Write(value);
    }

    private static void KeyFloat32(BinaryWriter writer, string key, float value)
    {
        Key(writer, key, ValueType.Float32);
        writer.Write(value);
    }

    private static void KeyBool(BinaryWriter writer, string key, bool value)
    {
        Key(writer, key, ValueType.Bool);
        writer.Write((byte)(value ? 1 : 0));
    }

    private static void KeyArray(BinaryWriter writer, string key, ValueType itemType, int count, Action<int> writeItem)
    {
        Key(writer, key, ValueType.Array);
        writer.Write((uint)itemType);
        writer.Write((ulong)count);
        for (var i = 0; i < count; i++) writeItem(i);
    }
}
