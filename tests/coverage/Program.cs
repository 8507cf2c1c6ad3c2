using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Xml.Linq;

// Merges the cobertura reports coverlet wrote during a test run (one per test project) and prints
// line coverage per area: overall, auth, RPC, the connection upgrade and error paths. Writes the
// same table to artifacts/coverage/summary.md and exits 1 when an area is below the floor in
// tests/coverage/thresholds.json. Usage: dotnet run --project tests/coverage [-- REPORT_DIR]

var root = FindRoot();
var reportDir = args.Length > 0 ? Path.GetFullPath(args[0]) : Path.Combine(root, "artifacts", "coverage");
var reports = Directory.Exists(reportDir) ? Directory.GetFiles(reportDir, "*.cobertura.xml") : [];
if (reports.Length == 0)
{
    Console.Error.WriteLine($"coverage: no *.cobertura.xml in {reportDir}; run the test command first");
    return 2;
}

// (file relative to the root, line) → hit at least once in any test tier.
var lines = new Dictionary<(string File, int Line), bool>();
foreach (var report in reports)
{
    var document = XDocument.Load(report);
    var sources = document.Descendants("source").Select(s => s.Value).ToArray();
    foreach (var @class in document.Descendants("class"))
    {
        var file = Resolve((string)@class.Attribute("filename")!, sources, root);
        if (file is null) continue;
        foreach (var line in @class.Element("lines")?.Elements("line") ?? [])
        {
            var key = (file, int.Parse((string)line.Attribute("number")!, CultureInfo.InvariantCulture));
            var hit = long.Parse((string)line.Attribute("hits")!, CultureInfo.InvariantCulture) > 0;
            lines[key] = lines.TryGetValue(key, out var before) ? before || hit : hit;
        }
    }
}

var errorLines = ErrorPathLines(lines.Keys.Select(k => k.File).Distinct(), root);
var areas = new (string Name, string What, Func<string, int, bool> Contains)[]
{
    ("overall", "src/ (Facilities, Workers, TestKit)", (f, _) => f.StartsWith("src/", StringComparison.Ordinal)),
    ("auth", "src/Workers/Auth", (f, _) => f.StartsWith("src/Workers/Auth/", StringComparison.Ordinal)),
    ("rpc", "src/Facilities/Rpc", (f, _) => f.StartsWith("src/Facilities/Rpc/", StringComparison.Ordinal)),
    ("upgrade", "multistream, Noise, Yamux, ConnectionUpgrader", (f, _) =>
        f.StartsWith("src/Facilities/Net/Multistream/", StringComparison.Ordinal) || f.StartsWith("src/Facilities/Net/Noise/", StringComparison.Ordinal)
        || f.StartsWith("src/Facilities/Net/Yamux/", StringComparison.Ordinal) || f == "src/Facilities/Net/Host/ConnectionUpgrader.cs"),
    ("error-paths", "throw statements and catch blocks in src/", (f, l) => errorLines.Contains((f, l))),
};

var thresholds = JsonDocument.Parse(File.ReadAllText(Path.Combine(root, "tests", "coverage", "thresholds.json"))).RootElement.GetProperty("areas");
var table = new StringBuilder();
table.AppendLine("| area | covers | lines | covered | target | floor | |");
table.AppendLine("|---|---|---:|---:|---:|---:|---|");
var failures = new List<string>();
foreach (var (name, what, contains) in areas)
{
    var inArea = lines.Where(kv => contains(kv.Key.File, kv.Key.Line)).ToArray();
    var covered = inArea.Count(kv => kv.Value);
    var percent = inArea.Length == 0 ? 0 : 100.0 * covered / inArea.Length;
    var target = thresholds.GetProperty(name).GetProperty("target").GetDouble();
    var floor = thresholds.GetProperty(name).GetProperty("floor").GetDouble();
    var verdict = percent >= target ? "target met" : percent >= floor ? "below target" : "BELOW FLOOR";
    if (percent < floor) failures.Add($"{name}: {percent:F1}% is below the floor of {floor}%");
    table.AppendLine(CultureInfo.InvariantCulture,
        $"| {name} | {what} | {inArea.Length} | {percent:F1}% | {target}% | {floor}% | {verdict} |");
}

var summary = $"Line coverage of {reports.Length} test project(s) ({string.Join(", ", reports.Select(Path.GetFileName))}):\n\n{table}";
Console.WriteLine(summary);
File.WriteAllText(Path.Combine(reportDir, "summary.md"), summary);
foreach (var failure in failures) Console.Error.WriteLine("coverage: " + failure);
return failures.Count == 0 ? 0 : 1;

static string FindRoot()
{
    for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir is not null; dir = dir.Parent)
        if (File.Exists(Path.Combine(dir.FullName, "P2PInference.sln"))) return dir.FullName;
    throw new InvalidOperationException("run from inside the clone: P2PInference.sln not found above " + Directory.GetCurrentDirectory());
}

// A report names files absolutely, or relative to one of its <source> folders; null when outside the clone.
static string? Resolve(string filename, string[] sources, string root)
{
    var full = Path.IsPathRooted(filename) ? filename : sources.Select(s => Path.Combine(s, filename)).FirstOrDefault(File.Exists);
    if (full is null) return null;
    var relative = Path.GetRelativePath(root, full).Replace('\\', '/');
    return relative.StartsWith("..", StringComparison.Ordinal) ? null : relative;
}

// Error paths, read from the source: lines holding a throw, and the lines of catch blocks. Only those
// coverlet counts as coverable take part, like every other area.
static HashSet<(string File, int Line)> ErrorPathLines(IEnumerable<string> files, string root)
{
    var result = new HashSet<(string, int)>();
    foreach (var file in files)
    {
        var path = Path.Combine(root, file);
        if (!File.Exists(path)) continue;
        var text = File.ReadAllLines(path);
        var catchDepth = -1;
        var depth = 0;
        var pendingCatch = false;
        for (var i = 0; i < text.Length; i++)
        {
            var code = text[i].Trim();
            if (code.StartsWith("//", StringComparison.Ordinal)) continue;
            if (code.StartsWith("catch", StringComparison.Ordinal) || code.StartsWith("} catch", StringComparison.Ordinal)) pendingCatch = true;
            if (catchDepth >= 0 || code.Contains("throw", StringComparison.Ordinal)) result.Add((file, i + 1));
            foreach (var c in code)
            {
                if (c == '{')
                {
                    depth++;
                    if (pendingCatch && catchDepth < 0)
                    {
                        catchDepth = depth;
                        pendingCatch = false;
                        result.Add((file, i + 1));
                    }
                }
                else if (c == '}')
                {
                    if (depth == catchDepth) catchDepth = -1;
                    depth--;
                }
            }
        }
    }
    return result;
}
