using Microsoft.ML.OnnxRuntime;
using NeuralCore.NN;
using NeuralCore.Onnx.Proto;

namespace NeuralCore.Onnx.Tests;

/// <summary>Runs exported models in ONNX Runtime and compares them with NeuralCore's own eval-mode outputs.</summary>
internal static class OnnxTestSupport
{
    /// <summary>The largest relative difference the issue allows: max |onnx - neuralcore| / max |neuralcore|.</summary>
    public const double Tolerance = 1e-4;

    public static (float[] Values, long[] Shape) RunOrt(byte[] model, float[] input, int[] shape, string inputName = "input", string outputName = "logits")
    {
        using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR };
        using var session = new InferenceSession(model, options);
        using var value = OrtValue.CreateTensorValueFromMemory(input, shape.Select(d => (long)d).ToArray());
        using var runOptions = new RunOptions();
        using var outputs = session.Run(runOptions, [inputName], [value], [outputName]);
        var output = outputs[0];
        return (output.GetTensorDataAsSpan<float>().ToArray(), output.GetTensorTypeAndShape().Shape);
    }

    public static Tensor RunNeuralCore(Module model, Tensor input)
    {
        var wasTraining = model.Training;
        model.Eval();
        try
        {
            using var _ = Autograd.Autograd.NoGrad();
            return model.Call(input);
        }
        finally { model.Train(wasTraining); }
    }

    public static void AssertClose(double relativeDifference)
    {
        Assert.True(relativeDifference < Tolerance, $"relative difference {relativeDifference:E2} exceeds {Tolerance:E0}");
    }

    public static double RelativeDifference(float[] actual, float[] expected)
    {
        Assert.Equal(expected.Length, actual.Length);
        double maxDiff = 0, maxRef = 0;
        for (var i = 0; i < expected.Length; i++)
        {
            Assert.False(float.IsNaN(actual[i]), $"ONNX Runtime produced NaN at {i}.");
            maxDiff = Math.Max(maxDiff, Math.Abs((double)actual[i] - expected[i]));
            maxRef = Math.Max(maxRef, Math.Abs((double)expected[i]));
        }
        return maxDiff / Math.Max(maxRef, 1e-12);
    }

    /// <summary>Exports, checks the file with <see cref="OnnxChecker"/>, runs it at <paramref name="batch"/> and returns the relative difference.</summary>
    public static double ExportAndCompare(Module model, int[] inputShape, int batch, OnnxExportOptions? options = null, ulong seed = 7)
    {
        options ??= new OnnxExportOptions();
        var bytes = OnnxExporter.ExportToBytes(model, inputShape, options);
        Assert.Empty(OnnxChecker.FindProblems(bytes));
        var x = SampleInput(batch, inputShape, new Generator(seed));
        var expected = RunNeuralCore(model, x);
        var (actual, shape) = RunOrt(bytes, x.ToArray(), x.ShapeArray(), options.InputName, options.OutputName);
        Assert.Equal(expected.Shape.ToArray().Select(d => (long)d), shape);
        var expectedValues = expected.ToArray();
        AssertDependsOnInput(expectedValues, batch);
        return RelativeDifference(actual, expectedValues);
    }

    /// <summary>
    /// A model whose output is zero, or the same for every example of a batch, would prove nothing: the rows of the
    /// reference output must differ by at least 1e-3 of its largest value.
    /// </summary>
    private static void AssertDependsOnInput(float[] output, int batch)
    {
        var scale = output.Max(Math.Abs);
        Assert.True(scale > 0, "The model's output is all zeros.");
        if (batch < 2) return;
        var row = output.Length / batch;
        var spread = 0.0;
        for (var i = row; i < output.Length; i++) spread = Math.Max(spread, Math.Abs(output[i] - output[i % row]));
        Assert.True(spread > 1e-3 * scale, $"The model's output hardly depends on its input (rows differ by {spread:E2} at most, values up to {scale:E2}).");
    }

    /// <summary>
    /// Sets every batch norm's running statistics to the statistics of random data flowing through the model (many
    /// training-mode passes, so the running averages converge), then perturbs the affine parameters. Random running
    /// statistics would swamp the signal with constant offsets and make the output nearly independent of the input.
    /// </summary>
    public static void Calibrate(Module model, int[] inputShape, ulong seed, int passes = 30)
    {
        var g = new Generator(seed);
        model.Train();
        using (Autograd.Autograd.NoGrad())
            for (var i = 0; i < passes; i++) model.Call(SampleInput(8, inputShape, g));
        using var _ = Autograd.Autograd.NoGrad();
        foreach (var bn in model.NamedModules().Select(m => m.Module).OfType<BatchNorm2d>())
        {
            bn.Weight.CopyFrom(Tensor.Uniform([bn.NumFeatures], 0.6f, 1.4f, g));
            bn.Bias.CopyFrom(Tensor.Uniform([bn.NumFeatures], -0.2f, 0.2f, g));
        }
    }

    /// <summary>
    /// Gaussian noise with a random offset and scale per example: after global pooling, plain i.i.d. noise would give
    /// every example nearly the same features.
    /// </summary>
    public static Tensor SampleInput(int batch, int[] shape, Generator g)
    {
        using var _ = Autograd.Autograd.NoGrad();
        int[] perExample = [batch, .. shape.Select(_ => 1)];
        return Tensor.Randn([batch, .. shape], g).Mul(Tensor.Uniform(perExample, 0.5f, 2f, g)).Add(Tensor.Randn(perExample, g));
    }

    public static ModelProto Parse(byte[] bytes) => ModelProto.Parser.ParseFrom(bytes);

    /// <summary>
    /// Gives every conv and linear layer random He-scaled weights (CP-ResNet zero-initialises its head and second convs) and every batch norm
    /// random parameters and running statistics, so no layer is an identity. Follow with <see cref="Calibrate"/> for
    /// running statistics that fit the data.
    /// </summary>
    public static void Randomize(Module model, ulong seed)
    {
        var g = new Generator(seed);
        using var _ = Autograd.Autograd.NoGrad();
        foreach (var (_, m) in model.NamedModules())
        {
            if (m is Conv2d conv)
            {
                var fanIn = conv.Weight.NumElements / conv.Weight.Size(0);
                conv.Weight.CopyFrom(Tensor.Normal(conv.Weight.ShapeArray(), 0, (float)Math.Sqrt(2.0 / fanIn), g));
                conv.Bias?.CopyFrom(Tensor.Uniform(conv.Bias.ShapeArray(), -0.2f, 0.2f, g));
            }
            else if (m is Linear linear)
            {
                linear.Weight.CopyFrom(Tensor.Normal(linear.Weight.ShapeArray(), 0, (float)Math.Sqrt(2.0 / linear.InFeatures), g));
                linear.Bias?.CopyFrom(Tensor.Uniform(linear.Bias.ShapeArray(), -0.2f, 0.2f, g));
            }
            else if (m is BatchNorm2d bn)
            {
                var c = bn.NumFeatures;
                bn.Weight.CopyFrom(Tensor.Uniform([c], 0.5f, 1.5f, g));
                bn.Bias.CopyFrom(Tensor.Uniform([c], -0.3f, 0.3f, g));
                bn.RunningMean.CopyFrom(Tensor.Uniform([c], -0.5f, 0.5f, g));
                bn.RunningVar.CopyFrom(Tensor.Uniform([c], 0.5f, 2f, g));
            }
        }
    }
}
