namespace P2PInference.TestKit.Harness;

/// <summary>A user made by <see cref="TestDataFactory.User"/>: unique within the test, deterministic for its seed.</summary>
/// <param name="Email">Unique, on the reserved <c>test.invalid</c> domain, e.g. <c>user-3-12345@test.invalid</c>.</param>
/// <param name="Password">Meets a typical policy: 16 characters with upper and lower case letters, a digit and a symbol.</param>
/// <param name="DisplayName">A readable name, unique within the test.</param>
public sealed record TestUser(string Email, string Password, string DisplayName);
