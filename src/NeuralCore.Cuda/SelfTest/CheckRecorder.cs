using System.Diagnostics;
using System.Globalization;

namespace NeuralCore.Cuda.SelfTest;

/// <summary>Runs checks, turning any exception into a failed check, and collects the results in order.</summary>
internal sealed class CheckRecorder(TextWriter? progress)
{
    private readonly List<SelfTestCheck> _checks = [];

    public IReadOnlyList<SelfTestCheck> Checks => _checks;

    /// <summary>Runs <paramref name="body"/>, which fills a <see cref="Comparison"/>; an exception fails the check with its message.</summary>
    public void Run(string group, string name, string tolerance, Action<Comparison> body)
    {
        var clock = Stopwatch.StartNew();
        var comparison = new Comparison();
        string? failure;
        try
        {
            // Inside a scope, op outputs take memory with undefined contents (NaN while the self-test poisons it), as
            // in a training step: a kernel must write every element of its output.
            using var scope = TensorScope.Enter();
            body(comparison);
            failure = comparison.Failure;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            failure = $"{e.GetType().Name}: {e.Message}";
        }
        var check = new SelfTestCheck(group, name, failure is null, comparison.MaxError, tolerance, failure ?? comparison.Note ?? "", clock.Elapsed.TotalSeconds);
        _checks.Add(check);
        progress?.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{(check.Passed ? "pass" : "FAIL")}  {group,-12} {name}  max error {check.MaxError:G3}{(check.Detail.Length > 0 ? "  " + check.Detail : "")}"));
    }
}

/// <summary>
/// Compares CUDA results with the CPU backend's (the specification) and remembers the largest absolute difference
/// and the first element outside the tolerance.
/// </summary>
internal sealed class Comparison
{
    /// <summary>The largest |CUDA - CPU| seen so far.</summary>
    public double MaxError { get; private set; }

    /// <summary>The first mismatch, or null while everything matched.</summary>
    public string? Failure { get; private set; }

    /// <summary>A remark for a passing check (e.g. the losses of a training run).</summary>
    public string? Note { get; set; }

    /// <summary>Fails the check with <paramref name="message"/> unless it already failed.</summary>
    public void Fail(string message) => Failure ??= message;

    /// <summary>Checks |gpu - cpu| &lt;= atol + rtol * |cpu| element-wise (NaN matches NaN); both are Float32 of one shape.</summary>
    public void Close(string what, Tensor cpu, Tensor gpu, float atol, float rtol)
    {
        if (!cpu.Shape.SequenceEqual(gpu.Shape))
        {
            Fail($"{what}: CPU shape {Tensor.FormatShape(cpu.Shape)}, CUDA shape {Tensor.FormatShape(gpu.Shape)}");
            return;
        }
        var expected = cpu.ToArray();
        var actual = gpu.ToArray();
        for (var i = 0; i < expected.Length; i++)
        {
            float e = expected[i], a = actual[i];
            if (e == a || (float.IsNaN(e) && float.IsNaN(a))) continue;
            var diff = Math.Abs((double)a - e);
            if (double.IsNaN(diff)) diff = double.PositiveInfinity;
            MaxError = Math.Max(MaxError, diff);
            // A NaN on one side only is a mismatch whatever the tolerance (with e NaN the bound below is NaN too, and
            // no comparison with it holds).
            if (diff > atol + rtol * Math.Abs(e) || float.IsNaN(e))
                Fail(string.Create(CultureInfo.InvariantCulture, $"{what} element {i}: CPU {e:G9}, CUDA {a:G9}"));
        }
    }

    /// <summary>Checks that two tensors (any dtype) hold exactly the same values.</summary>
    public void Exact(string what, Tensor cpu, Tensor gpu)
    {
        if (cpu.DType == DType.Float32)
        {
            Close(what, cpu, gpu, 0, 0);
            return;
        }
        if (!cpu.Shape.SequenceEqual(gpu.Shape))
        {
            Fail($"{what}: CPU shape {Tensor.FormatShape(cpu.Shape)}, CUDA shape {Tensor.FormatShape(gpu.Shape)}");
            return;
        }
        var expected = cpu.ToInt64Array();
        var actual = gpu.ToInt64Array();
        for (var i = 0; i < expected.Length; i++)
        {
            if (expected[i] == actual[i]) continue;
            MaxError = Math.Max(MaxError, Math.Abs((double)actual[i] - expected[i]));
            Fail($"{what} element {i}: CPU {expected[i]}, CUDA {actual[i]}");
        }
    }
}
