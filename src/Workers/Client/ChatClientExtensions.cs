using Microsoft.Extensions.AI;

namespace P2PInference.Workers.Client;

public static class ChatClientExtensions
{
    /// <summary>This client as Microsoft.Extensions.AI's <see cref="IChatClient"/> (see <see cref="P2PInferenceChatClient"/>).</summary>
    public static IChatClient AsChatClient(this P2PInferenceClient client, string? defaultModel = null) => new P2PInferenceChatClient(client, defaultModel);
}
