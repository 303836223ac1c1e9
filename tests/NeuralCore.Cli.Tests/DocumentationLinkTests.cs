using System.Text;
using System.Text.RegularExpressions;

namespace NeuralCore.Cli.Tests;

/// <summary>
/// The repository's Markdown (README, docs/, benchmarks/, samples/): every relative link (inline, with or without a
/// title, or a reference definition; outside code) leads to a file that exists, and every #anchor to a heading of its
/// page, by GitHub's rule for heading anchors. The docs move as the code does
/// (the sixtieth session split docs/benchmarks.md in two), and a broken link is found here, not by a reader.
/// </summary>
public class DocumentationLinkTests
{
    [Fact]
    public void EveryRelativeLinkLeadsToAFileAndEveryAnchorToAHeading()
    {
        string root = RepositoryRoot();
        var pages = MarkdownPages(root).ToList();
        Assert.Contains(pages, p => Path.GetFileName(p) == "benchmarks.md");
        var broken = new List<string>();
        int links = 0;
        foreach (string page in pages)
        {
            foreach (var (line, target) in Links(File.ReadAllLines(page)))
            {
                links++;
                string problem = Check(page, target);
                if (problem.Length > 0) broken.Add($"{Path.GetRelativePath(root, page)}:{line}: ({target}) {problem}");
            }
        }
        Assert.True(links > 100, $"only {links} links found in {pages.Count} pages: the link pattern no longer matches the docs");
        Assert.True(broken.Count == 0, $"{broken.Count} broken links:\n" + string.Join('\n', broken));
    }

    [Theory]
    [InlineData("ASC data pipeline (NeuralCore.Audio / NeuralCore.Data)", "asc-data-pipeline-neuralcoreaudio--neuralcoredata")]
    [InlineData("What changed, and what each step bought", "what-changed-and-what-each-step-bought")]
    [InlineData("The host's two states (twenty-fifth session)", "the-hosts-two-states-twenty-fifth-session")]
    [InlineData("`bench`: time a step", "bench-time-a-step")]
    [InlineData("GPU (NVIDIA H200, H100)", "gpu-nvidia-h200-h100")]
    [InlineData("Step 3 [see here](x.md)", "step-3-see-here")]
    public void AHeadingsAnchorIsGitHubs(string heading, string anchor) => Assert.Equal(anchor, Slug(heading));

    [Fact]
    public void RepeatedHeadingsGetNumberedAnchorsAndFencedHeadingsNone()
    {
        string[] page = ["# Notes", "## Results", "```", "## Not a heading", "```", "## Results", "### Results ##", "~~~", "# Nor this", "~~~", "## C#"];
        Assert.Equal(["c", "notes", "results", "results-1", "results-2"], Anchors(page).Order(StringComparer.Ordinal).ToArray());
    }

    [Fact]
    public void LinksInCodeAreNotLinks()
    {
        string[] page = ["See [the guide](guide.md#start) and `[not](a.md)`.", "```", "[nor](b.md)", "```", "![chart](img.png)",
            "~~~", "[nor this](c.md)", "~~~", "[titled](d.md \"Title\") and [web](https://example.org)", "[ref]: e.md#part"];
        Assert.Equal([(1, "guide.md#start"), (5, "img.png"), (9, "d.md"), (10, "e.md#part")], Links(page).ToArray());
    }

    /// <summary>Empty when <paramref name="target"/>, linked from <paramref name="page"/>, exists; else what is wrong.</summary>
    private static string Check(string page, string target)
    {
        int hash = target.IndexOf('#');
        string path = hash < 0 ? target : target[..hash], anchor = hash < 0 ? "" : target[(hash + 1)..];
        string file = path.Length == 0 ? page : Path.GetFullPath(Path.Combine(Path.GetDirectoryName(page)!, Uri.UnescapeDataString(path)));
        if (!File.Exists(file) && !Directory.Exists(file)) return "no such file";
        if (anchor.Length == 0 || !file.EndsWith(".md", StringComparison.OrdinalIgnoreCase)) return "";
        return Anchors(File.ReadAllLines(file)).Contains(anchor) ? "" : "no such heading";
    }

    /// <summary>The folder holding NeuralCore.sln, found upward from the test's own folder.</summary>
    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "NeuralCore.sln"))) return dir.FullName;
        throw new InvalidOperationException($"No NeuralCore.sln above {AppContext.BaseDirectory}.");
    }

    /// <summary>README.md and the Markdown under docs/, benchmarks/ and samples/, build outputs aside.</summary>
    private static IEnumerable<string> MarkdownPages(string root)
    {
        yield return Path.Combine(root, "README.md");
        foreach (string folder in new[] { "docs", "benchmarks", "samples" })
        {
            foreach (string file in Directory.EnumerateFiles(Path.Combine(root, folder), "*.md", SearchOption.AllDirectories))
            {
                string relative = Path.GetRelativePath(root, file).Replace('\\', '/');
                if (!relative.Contains("/bin/") && !relative.Contains("/obj/") && !relative.Contains("BenchmarkDotNet.Artifacts")) yield return file;
            }
        }
    }

    // An inline link's target, with or without a title ([a](b "t")), and a reference definition's ([a]: b).
    private static readonly Regex LinkPattern = new(@"\]\(([^)\s]+)(?:\s+""[^""]*"")?\)", RegexOptions.Compiled);
    private static readonly Regex Definition = new(@"^\s{0,3}\[[^\]]+\]:\s*(\S+)", RegexOptions.Compiled);
    private static readonly Regex InlineCode = new(@"`[^`]*`", RegexOptions.Compiled);
    private static readonly Regex Scheme = new(@"^[a-zA-Z][a-zA-Z0-9+.-]*:", RegexOptions.Compiled);

    /// <summary>The (1-based line, target) of each relative link outside code fences and inline code.</summary>
    private static IEnumerable<(int Line, string Target)> Links(string[] lines)
    {
        foreach (var (i, line) in OutsideFences(lines))
        {
            string text = InlineCode.Replace(line, "");
            var targets = LinkPattern.Matches(text).Select(m => m.Groups[1].Value);
            if (Definition.Match(text) is { Success: true } definition) targets = targets.Append(definition.Groups[1].Value);
            foreach (string target in targets)
                if (!Scheme.IsMatch(target)) yield return (i + 1, target);
        }
    }

    /// <summary>The (0-based index, line) of each line outside fenced code blocks (``` or ~~~).</summary>
    private static IEnumerable<(int Index, string Line)> OutsideFences(string[] lines)
    {
        bool fenced = false;
        for (int i = 0; i < lines.Length; i++)
        {
            string start = lines[i].TrimStart();
            if (start.StartsWith("```", StringComparison.Ordinal) || start.StartsWith("~~~", StringComparison.Ordinal))
            {
                fenced = !fenced;
                continue;
            }
            if (!fenced) yield return (i, lines[i]);
        }
    }

    /// <summary>The anchors of a page's headings outside code fences: a repeated one gets -1, -2, ... as on GitHub.</summary>
    private static HashSet<string> Anchors(string[] lines)
    {
        var anchors = new HashSet<string>();
        var seen = new Dictionary<string, int>();
        foreach (var (_, line) in OutsideFences(lines))
        {
            // A closing run of #s counts only after a space: "## C#" is about C#.
            var heading = Regex.Match(line, @"^#{1,6}\s+(.*?)(?:\s+#+)?\s*$");
            if (!heading.Success) continue;
            string slug = Slug(heading.Groups[1].Value);
            int count = seen.GetValueOrDefault(slug);
            seen[slug] = count + 1;
            anchors.Add(count == 0 ? slug : $"{slug}-{count}");
        }
        return anchors;
    }

    /// <summary>
    /// GitHub's anchor for a heading: its text (a link's text for the link, code without its backticks), lower case,
    /// with every character that is not a letter, digit, underscore, hyphen or space dropped and the spaces made hyphens.
    /// </summary>
    private static string Slug(string heading)
    {
        string text = Regex.Replace(heading, @"\[([^\]]*)\]\([^)]*\)", "$1").Replace("`", "").Trim().ToLowerInvariant();
        var slug = new StringBuilder(text.Length);
        foreach (char c in text)
        {
            if (c == ' ') slug.Append('-');
            else if (char.IsLetterOrDigit(c) || c is '_' or '-') slug.Append(c);
        }
        return slug.ToString();
    }
}
