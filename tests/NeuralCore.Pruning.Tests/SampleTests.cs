using System.Reflection;

namespace NeuralCore.Pruning.Tests;

/// <summary>Runs with nothing else in parallel: it captures the console.</summary>
[CollectionDefinition(nameof(ConsoleCollection), DisableParallelization = true)]
public sealed class ConsoleCollection;

/// <summary>
/// samples/PruneYourOwnModel, run as its own program (its entry point, the console captured): a model of a user's own,
/// trained, traced, pruned by half in two steps with fine-tuning after each, through the public API only. The figures
/// are the sample's, fixed by its seed; its README quotes them.
/// </summary>
[Collection(nameof(ConsoleCollection))]
public class SampleTests
{
    [Fact]
    public void PruneYourOwnModel_PrunesItsModelByHalfInTwoSteps()
    {
        var entry = Assembly.Load(new AssemblyName("PruneYourOwnModel")).EntryPoint!;
        var output = new StringWriter();
        var console = Console.Out;
        Console.SetOut(output);
        try
        {
            entry.Invoke(null, entry.GetParameters().Length == 0 ? null : [Array.Empty<string>()]);
        }
        finally
        {
            Console.SetOut(console);
        }
        string text = output.ToString();
        Assert.Contains("trained: 5,874 parameters, accuracy", text);
        Assert.Contains("group 0: 0  width 16", text);
        Assert.Contains("step 1: ratio 0.25, parameters 5,874 -> 3,542, widths 12/24", text);
        Assert.Contains("step 2: ratio 0.50, parameters 3,542 -> 1,786, widths 8/16", text);
        // The toy task stays learnt after each step's fine-tuning.
        var after = text.Split('\n').Where(l => l.Contains("after fine-tuning")).Select(l => double.Parse(l.Split("after fine-tuning")[1].Trim().TrimEnd('%').Trim(), System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.Equal(2, after.Count);
        Assert.All(after, a => Assert.True(a >= 90, $"accuracy after fine-tuning {a} %"));
    }
}
