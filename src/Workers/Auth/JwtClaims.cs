namespace P2PInference.Workers.Auth;

/// <summary>What a validated token says: who it was issued to, by whom, and for how long.</summary>
/// <param name="Issuer"><c>iss</c>.</param>
/// <param name="Subject"><c>sub</c>: the user id.</param>
/// <param name="Email"><c>email</c>: the user's normalized address when the token was issued.</param>
/// <param name="IssuedAt"><c>iat</c>.</param>
/// <param name="ExpiresAt"><c>exp</c>.</param>
/// <param name="TokenId"><c>jti</c>: unique per token.</param>
public sealed record JwtClaims(string Issuer, string Subject, string Email, DateTimeOffset IssuedAt, DateTimeOffset ExpiresAt, string TokenId);
