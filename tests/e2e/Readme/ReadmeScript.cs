using System.Text.RegularExpressions;

namespace P2PInference.Tests.E2E.Readme;

/// <summary>What a line of a README shell block asks for.</summary>
internal enum ReadmeStepKind
{
    /// <summary><c>NAME=value</c>: a shell variable the later lines use.</summary>
    Assignment,

    /// <summary><c>p2pinference run ROLE …</c> or <c>client serve</c>: runs until stopped, in a terminal of its own, and says " ready: " when it serves.</summary>
    Worker,

    /// <summary>Anything else: a command that runs to completion.</summary>
    Command,
}

/// <summary>One line of a README shell block, with <c>dotnet run --project src/Workers --</c> kept as written.</summary>
internal sealed record ReadmeStep(ReadmeStepKind Kind, string Line, string? Variable)
{
    public override string ToString() => Line;
}

/// <summary>
/// The shell blocks of one section of README.md, cut into the steps a user types. Comments and blank
/// lines are skipped; everything else is a step, so a command added to the README is run too.
/// </summary>
internal static partial class ReadmeScript
{
    /// <summary>The prefix the README uses for the executable; the test runs the built one in its place.</summary>
    public const string RunFromClone = "dotnet run --project src/Workers --";

    /// <exception cref="InvalidDataException">The section or its shell blocks are missing.</exception>
    public static IReadOnlyList<ReadmeStep> StepsOf(string markdown, string sectionHeading)
    {
        var lines = markdown.Replace("\r\n", "\n").Split('\n');
        var start = Array.FindIndex(lines, l => l.TrimStart('#', ' ') == sectionHeading && l.StartsWith('#'));
        if (start < 0) throw new InvalidDataException($"README.md has no section '{sectionHeading}'");
        var level = lines[start].TakeWhile(c => c == '#').Count();
        var steps = new List<ReadmeStep>();
        var inBlock = false;
        for (var i = start + 1; i < lines.Length; i++)
        {
            var line = lines[i];
            if (!inBlock && line.StartsWith('#') && line.TakeWhile(c => c == '#').Count() <= level) break;
            if (line.TrimStart().StartsWith("```", StringComparison.Ordinal))
            {
                inBlock = !inBlock;
                continue;
            }
            if (!inBlock) continue;
            var text = line.Trim();
            if (text.Length == 0 || text.StartsWith('#')) continue;
            steps.Add(Classify(text));
        }
        if (steps.Count == 0) throw new InvalidDataException($"the README section '{sectionHeading}' has no shell block");
        return steps;
    }

    /// <summary>The line with the clone's <c>dotnet run</c> replaced by the built executable.</summary>
    public static string WithExecutable(string line, string dllPath) => line.Replace(RunFromClone, $"dotnet '{dllPath}'", StringComparison.Ordinal);

    private static ReadmeStep Classify(string line)
    {
        if (AssignmentPattern().Match(line) is { Success: true } assignment)
            return new ReadmeStep(ReadmeStepKind.Assignment, line, assignment.Groups[1].Value);
        if (WorkerPattern().IsMatch(line)) return new ReadmeStep(ReadmeStepKind.Worker, line, null);
        return new ReadmeStep(ReadmeStepKind.Command, line, null);
    }

    [GeneratedRegex(@"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=")]
    private static partial Regex AssignmentPattern();

    [GeneratedRegex(@"(?:^|\s)(?:run\s+(?:bootstrap|auth|gateway|processor)|client\s+serve)\b")]
    private static partial Regex WorkerPattern();
}
