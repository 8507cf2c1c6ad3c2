using System.Text;
using P2PInference.Facilities.Store;
using P2PInference.Workers.Contracts.Auth;

namespace P2PInference.Workers.Auth;

/// <summary>
/// Users in the store: <c>users/&lt;normalized email&gt;</c> holds the <see cref="UserRecord"/>,
/// <c>user-ids/&lt;user id&gt;</c> the email it belongs to.
/// </summary>
/// <remarks>
/// The email entry is the record of truth and is claimed with a compare-and-swap from "absent",
/// so of two concurrent registrations exactly one wins. The id index is written first: if the
/// claim then fails (or the process dies in between) the index points at an email that is
/// absent or owned by another id, and <see cref="FindByIdAsync"/> ignores it; a losing claim
/// removes its index entry again.
/// </remarks>
internal sealed class UserStore
{
    private readonly IKeyValueStore _byEmail;
    private readonly IKeyValueStore _idToEmail;

    public UserStore(IKeyValueStore store)
    {
        _byEmail = store.SubStore("users");
        _idToEmail = store.SubStore("user-ids");
    }

    public async ValueTask<UserRecord?> FindByEmailAsync(string normalizedEmail, CancellationToken cancellationToken) =>
        await _byEmail.GetMessageAsync(normalizedEmail, UserRecord.Parser, cancellationToken);

    public async ValueTask<UserRecord?> FindByIdAsync(string userId, CancellationToken cancellationToken)
    {
        var email = await _idToEmail.GetAsync(userId, cancellationToken);
        if (email is null)
        {
            return null;
        }

        var user = await FindByEmailAsync(Encoding.UTF8.GetString(email), cancellationToken);
        return user?.UserId == userId ? user : null;
    }

    /// <summary>Stores a new user; false when the email is taken (then nothing is left behind).</summary>
    public async ValueTask<bool> TryCreateAsync(UserRecord user, CancellationToken cancellationToken)
    {
        await _idToEmail.PutAsync(user.UserId, Encoding.UTF8.GetBytes(user.Email), cancellationToken);
        // A cancelled or failed claim may still have happened, so only a definite "taken" undoes the index.
        var created = await _byEmail.CompareAndSwapAsync(user.Email, default(ReadOnlyMemory<byte>?), user.ToByteArray(), cancellationToken);
        if (!created)
        {
            await _idToEmail.DeleteAsync(user.UserId, CancellationToken.None);
        }

        return created;
    }

    /// <summary>Replaces <paramref name="current"/> with <paramref name="updated"/> unless the record changed meanwhile.</summary>
    public async ValueTask<bool> TryReplaceAsync(UserRecord current, UserRecord updated, CancellationToken cancellationToken) =>
        await _byEmail.CompareAndSwapAsync(current.Email, current.ToByteArray(), updated.ToByteArray(), cancellationToken);
}
