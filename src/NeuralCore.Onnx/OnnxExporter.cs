using NeuralCore.IO;
using Module = NeuralCore.NN.Module;
using System.Reflection;
using Google.Protobuf;
using NeuralCore.Autograd;
using NeuralCore.NN;
using NeuralCore.Onnx.Proto;

namespace NeuralCore.Onnx;

/// <summary>
/// Exports a NeuralCore model to ONNX by tracing one eval-mode forward pass (as the pruner does): every recorded op
/// becomes ONNX nodes, parameters and buffers become initializers named by their state-dict keys, and the batch axis
/// stays symbolic, so user models export without extra code and pruned models export with their pruned widths.
/// </summary>
/// <remarks>
/// Ops written: Conv, BatchNormalization (or folded into the conv), Relu, HardSwish, Clip (ReLU6, Clamp), Sigmoid, Tanh,
/// MaxPool, AveragePool, GlobalAveragePool (mean over H and W, adaptive pooling to 1x1), Gemm (Linear) or MatMul,
/// Add/Sub/Mul/Div/Max/Min, Concat, Flatten/Reshape, Transpose, Slice, Expand, Softmax/LogSoftmax, the reductions, and
/// the element-wise Neg, Exp, Log, Sqrt, Abs, Pow, Reciprocal, Sign. An op outside that set fails with an
/// <see cref="OnnxExportException"/> naming the op and the module that ran it.
/// </remarks>
public static class OnnxExporter
{
    /// <summary>
    /// Traces <paramref name="model"/> in eval mode on an input of shape [batch, ..<paramref name="inputShape"/>] and
    /// writes the ONNX model to <paramref name="path"/> (replacing it only once the export succeeded).
    /// </summary>
    /// <param name="model">The model; its training mode is restored afterwards.</param>
    /// <param name="inputShape">The shape of one example, without the batch axis (e.g. [1, 28, 28]).</param>
    /// <param name="path">The .onnx file to write.</param>
    /// <param name="options">Export settings (defaults: opset 17, dynamic batch, names <c>input</c> and <c>logits</c>).</param>
    /// <exception cref="OnnxExportException">An op of the model cannot be expressed in ONNX.</exception>
    public static void Export(Module model, int[] inputShape, string path, OnnxExportOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var bytes = ExportToBytes(model, inputShape, options);
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        // A temporary file of its own, flushed, renamed over the path, and deleted on failure: two exports to one path
        // no longer take each other's temporary file (a fixed ".tmp" name did), and a crash leaves no half-written model.
        AtomicFile.Write(full, stream => stream.Write(bytes));
    }

    /// <summary>Like <see cref="Export"/>, returning the serialized ONNX model instead of writing a file.</summary>
    /// <param name="model">The model; its training mode is restored afterwards.</param>
    /// <param name="inputShape">The shape of one example, without the batch axis.</param>
    /// <param name="options">Export settings.</param>
    /// <returns>The bytes of the .onnx file.</returns>
    public static byte[] ExportToBytes(Module model, int[] inputShape, OnnxExportOptions? options = null) =>
        BuildModel(model, inputShape, options ?? new OnnxExportOptions()).ToByteArray();

    /// <summary>The NeuralCore version written into exported models (<c>producer_version</c>, <c>neuralcore_version</c>).</summary>
    public static string NeuralCoreVersion { get; } =
        typeof(Tensor).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0]
        ?? typeof(Tensor).Assembly.GetName().Version?.ToString() ?? "unknown";

    internal static ModelProto BuildModel(Module model, int[] inputShape, OnnxExportOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputShape);
        options.Validate();
        if (inputShape.Length == 0 || inputShape.Any(d => d <= 0))
            throw new ArgumentException($"The input shape (without the batch axis) must have positive sizes, got {Tensor.FormatShape(inputShape)}; e.g. [1, 28, 28] for MNIST.", nameof(inputShape));

        var device = model.Parameters().FirstOrDefault()?.Device ?? Device.Cpu;
        var example = Tensor.Randn([options.TraceBatchSize, .. inputShape], new Generator(0), device);
        var output = Trace(model, example);

        var translator = new GraphTranslator(model, example, output, options);
        var graph = translator.Translate();

        var proto = new ModelProto
        {
            IrVersion = IrVersionFor(options.Opset),
            ProducerName = "NeuralCore",
            ProducerVersion = NeuralCoreVersion,
            ModelVersion = 1,
            DocString = model.ToString(),
            Graph = graph,
        };
        proto.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = options.Opset });
        var metadata = new Dictionary<string, string>
        {
            ["neuralcore_version"] = NeuralCoreVersion,
            ["input_shape"] = string.Join(",", inputShape),
            ["fold_bn"] = options.FoldBatchNorm ? "true" : "false",
        };
        foreach (var (key, value) in options.Metadata) metadata[key] = value;
        foreach (var (key, value) in metadata) proto.MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });
        return proto;
    }

    /// <summary>The IR version released with each opset (ONNX's own pairing), so older runtimes accept the file.</summary>
    private static long IrVersionFor(int opset) => opset switch
    {
        <= 18 => 8,
        <= 20 => 9,
        _ => 10,
    };

    private static Tensor Trace(Module model, Tensor example)
    {
        var wasTraining = model.Training;
        model.Eval();
        try
        {
            using (Autograd.Autograd.NoGrad())
            using (Autograd.Autograd.Trace())
                return model.Call(example);
        }
        finally { model.Train(wasTraining); }
    }

    /// <summary>The nodes the output depends on, in recording (a topological) order.</summary>
    internal static List<Node> CollectNodes(Tensor output)
    {
        var seen = new HashSet<Node>(ReferenceEqualityComparer.Instance);
        var stack = new Stack<Node>();
        if (output.GradFn is { } root) { seen.Add(root); stack.Push(root); }
        while (stack.Count > 0)
            foreach (var t in stack.Pop().Inputs)
                if (t.GradFn is { } f && seen.Add(f)) stack.Push(f);
        return seen.OrderBy(n => n.Sequence).ToList();
    }
}
