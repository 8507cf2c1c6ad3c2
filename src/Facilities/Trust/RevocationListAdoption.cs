namespace P2PInference.Facilities.Trust;

/// <summary>What <see cref="GrantVerifier.Adopt"/> did with a signed revocation list.</summary>
public enum RevocationListAdoption
{
    /// <summary>It is held now, in place of the older one.</summary>
    Taken,

    /// <summary>Signed by the cluster key, but not newer than the list held: nothing wrong with it, nothing to do.</summary>
    NotNewer,

    /// <summary>Not signed by the cluster key (another cluster's, or a broken signature).</summary>
    Refused,
}
