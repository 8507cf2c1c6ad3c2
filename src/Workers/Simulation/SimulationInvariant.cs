namespace P2PInference.Workers.Simulation;

/// <summary>One property checked throughout a run: whether it held, how often it was checked, and the first violations.</summary>
public sealed class SimulationInvariant(string name, string description)
{
    private const int KeptViolations = 5;
    private readonly List<string> _violations = [];

    public string Name { get; } = name;

    public string Description { get; } = description;

    public long Checks { get; private set; }

    public long ViolationCount { get; private set; }

    public bool Ok => ViolationCount == 0;

    /// <summary>The first few violations, in the order seen.</summary>
    public IReadOnlyList<string> Violations => _violations;

    public void Check(bool holds, Func<string> violation)
    {
        Checks++;
        if (holds) return;
        ViolationCount++;
        if (_violations.Count < KeptViolations) _violations.Add(violation());
    }
}
