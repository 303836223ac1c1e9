using NeuralCore.Onnx.Proto;

namespace NeuralCore.Onnx;

/// <summary>
/// Checks the structural rules of an ONNX model that <c>onnx.checker.check_model</c> enforces and that matter for
/// running it, without Python: an IR version and a default-domain opset import, a named graph, unique value and node
/// names, every node input defined earlier (topological order) or by a graph input or initializer, graph outputs that
/// are produced, known standard op types with a plausible number of inputs, well-formed attributes, initializers whose
/// data size matches their shape, and conv/batch-norm/Gemm parameter shapes that fit their attributes.
/// </summary>
/// <remarks>Type and shape inference of intermediate values is left to ONNX Runtime (which does it on load).</remarks>
public static class OnnxChecker
{
    /// <summary>Throws when the ONNX file at <paramref name="path"/> breaks a rule; the message lists every problem.</summary>
    /// <param name="path">An .onnx file.</param>
    /// <exception cref="InvalidDataException">The file is not a valid ONNX model.</exception>
    public static void Validate(string path) => Validate(ReadFile(path), path);

    /// <summary>Throws when the serialized ONNX model breaks a rule; the message lists every problem.</summary>
    /// <param name="model">The bytes of an .onnx file.</param>
    /// <exception cref="InvalidDataException">The bytes are not a valid ONNX model.</exception>
    public static void Validate(byte[] model) => Validate(model, "the ONNX model");

    private static void Validate(byte[] model, string what)
    {
        var problems = FindProblems(model);
        if (problems.Count > 0)
            throw new InvalidDataException($"{what} fails {problems.Count} ONNX check(s):\n  - " + string.Join("\n  - ", problems));
    }

    /// <summary>Every rule the ONNX file at <paramref name="path"/> breaks, as readable sentences (empty when it passes).</summary>
    /// <param name="path">An .onnx file.</param>
    public static IReadOnlyList<string> FindProblems(string path) => FindProblems(ReadFile(path));

    /// <summary>Every rule the serialized ONNX model breaks, as readable sentences (empty when it passes).</summary>
    /// <param name="model">The bytes of an .onnx file.</param>
    public static IReadOnlyList<string> FindProblems(byte[] model)
    {
        ArgumentNullException.ThrowIfNull(model);
        ModelProto proto;
        try
        {
            proto = ModelProto.Parser.ParseFrom(model);
        }
        catch (Google.Protobuf.InvalidProtocolBufferException e)
        {
            return [$"The bytes are not an ONNX protobuf message: {e.Message}"];
        }
        return FindProblems(proto);
    }

    private static byte[] ReadFile(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"ONNX file '{path}' does not exist.", path);
        return File.ReadAllBytes(path);
    }

    internal static IReadOnlyList<string> FindProblems(ModelProto model)
    {
        var problems = new List<string>();
        if (model.IrVersion < 3) problems.Add($"ir_version is {model.IrVersion}; models with opset imports need IR version 3 or newer.");
        var defaultOpsets = model.OpsetImport.Where(o => o.Domain is "" or "ai.onnx").ToList();
        if (defaultOpsets.Count == 0) problems.Add("The model imports no opset of the default domain (opset_import with domain \"\").");
        else if (defaultOpsets.Count > 1) problems.Add("The model imports the default domain's opset more than once.");
        else if (defaultOpsets[0].Version < 1) problems.Add($"The default-domain opset version is {defaultOpsets[0].Version}; it must be positive.");
        foreach (var key in model.MetadataProps.GroupBy(p => p.Key).Where(g => g.Count() > 1).Select(g => g.Key))
            problems.Add($"The metadata key '{key}' appears more than once.");
        if (model.Graph is null)
        {
            problems.Add("The model has no graph.");
            return problems;
        }
        CheckGraph(model.Graph, problems);
        return problems;
    }

    private static void CheckGraph(GraphProto graph, List<string> problems)
    {
        if (string.IsNullOrEmpty(graph.Name)) problems.Add("The graph has no name (the ONNX checker requires one).");

        var defined = new HashSet<string>();
        var initializers = new Dictionary<string, TensorProto>();
        foreach (var t in graph.Initializer)
        {
            if (string.IsNullOrEmpty(t.Name)) { problems.Add("An initializer has no name."); continue; }
            if (!initializers.TryAdd(t.Name, t)) problems.Add($"The initializer name '{t.Name}' is used twice.");
            defined.Add(t.Name);
            CheckTensor(t, $"initializer '{t.Name}'", problems);
        }
        foreach (var input in graph.Input)
        {
            CheckValueInfo(input, "graph input", problems);
            // IR 4+ allows an input that also has an initializer (a default value); two inputs of one name are wrong.
            if (!defined.Add(input.Name) && !initializers.ContainsKey(input.Name)) problems.Add($"The graph input name '{input.Name}' is used twice.");
        }

        var nodeNames = new HashSet<string>();
        for (var i = 0; i < graph.Node.Count; i++)
        {
            var node = graph.Node[i];
            var label = $"node {i} ('{node.Name}', {node.OpType})";
            if (node.Name.Length > 0 && !nodeNames.Add(node.Name)) problems.Add($"The node name '{node.Name}' is used twice.");
            foreach (var input in node.Input)
                if (input.Length > 0 && !defined.Contains(input))
                    problems.Add($"{label} reads '{input}', which no graph input, initializer or earlier node defines (nodes must be in topological order).");
            foreach (var output in node.Output)
            {
                if (output.Length == 0) continue;
                if (!defined.Add(output)) problems.Add($"{label} writes '{output}', which is already defined (every value must have exactly one producer).");
            }
            CheckNode(node, label, initializers, problems);
        }

        var valueInfoNames = new HashSet<string>();
        foreach (var info in graph.ValueInfo)
        {
            CheckValueInfo(info, "value_info", problems);
            if (!valueInfoNames.Add(info.Name)) problems.Add($"value_info describes '{info.Name}' twice.");
            else if (!defined.Contains(info.Name)) problems.Add($"value_info describes '{info.Name}', which nothing in the graph defines.");
        }
        var outputNames = new HashSet<string>();
        if (graph.Output.Count == 0) problems.Add("The graph has no outputs.");
        foreach (var output in graph.Output)
        {
            CheckValueInfo(output, "graph output", problems);
            if (!outputNames.Add(output.Name)) problems.Add($"The graph output name '{output.Name}' is used twice.");
            if (!defined.Contains(output.Name)) problems.Add($"The graph output '{output.Name}' is not produced by any node, input or initializer.");
        }
    }

    private static void CheckValueInfo(ValueInfoProto info, string what, List<string> problems)
    {
        if (string.IsNullOrEmpty(info.Name)) { problems.Add($"A {what} has no name."); return; }
        if (info.Type?.TensorType is not { } tensor) { problems.Add($"The {what} '{info.Name}' has no tensor type."); return; }
        if (tensor.ElemType == 0) problems.Add($"The {what} '{info.Name}' has no element type.");
        if (tensor.Shape is { } shape)
            foreach (var d in shape.Dim)
                if (d.ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue && d.DimValue < 0)
                    problems.Add($"The {what} '{info.Name}' has a negative dimension {d.DimValue}.");
    }

    private static void CheckTensor(TensorProto t, string what, List<string> problems)
    {
        if (t.DataType == 0) { problems.Add($"The {what} has no data type."); return; }
        if (t.Dims.Any(d => d < 0)) { problems.Add($"The {what} has a negative dimension: [{string.Join(", ", t.Dims)}]."); return; }
        if (t.DataLocation == 1) return;   // external data: the bytes live in another file
        var count = t.Dims.Aggregate(1L, (acc, d) => acc * d);
        var typedCounts = new (string Field, int Count)[]
        {
            ("float_data", t.FloatData.Count), ("int32_data", t.Int32Data.Count), ("int64_data", t.Int64Data.Count), ("double_data", t.DoubleData.Count),
        };
        var typed = typedCounts.Where(c => c.Count > 0).ToList();
        if (!t.RawData.IsEmpty)
        {
            if (typed.Count > 0) problems.Add($"The {what} has both raw_data and {typed[0].Field}.");
            var size = OnnxDataType.ElementSize(t.DataType);
            if (size > 0 && t.RawData.Length != count * size)
                problems.Add($"The {what} has shape [{string.Join(", ", t.Dims)}] ({count} elements of {size} bytes) but {t.RawData.Length} bytes of raw_data.");
            return;
        }
        if (typed.Count > 1) { problems.Add($"The {what} stores data in both {typed[0].Field} and {typed[1].Field}."); return; }
        var stored = typed.Count == 1 ? typed[0].Count : 0;
        if (stored != count)
            problems.Add($"The {what} has shape [{string.Join(", ", t.Dims)}] ({count} elements) but holds {stored}.");
    }

    private static void CheckNode(NodeProto node, string label, Dictionary<string, TensorProto> initializers, List<string> problems)
    {
        if (string.IsNullOrEmpty(node.OpType)) { problems.Add($"{label} has no op_type."); return; }
        if (node.Output.Count == 0) problems.Add($"{label} has no outputs.");
        var attributeNames = new HashSet<string>();
        foreach (var a in node.Attribute)
        {
            if (string.IsNullOrEmpty(a.Name)) problems.Add($"{label} has an attribute without a name.");
            else if (!attributeNames.Add(a.Name)) problems.Add($"{label} has the attribute '{a.Name}' twice.");
            if (a.Type == AttributeProto.Types.AttributeType.Undefined) problems.Add($"{label}: attribute '{a.Name}' has no type.");
            if (a.Type == AttributeProto.Types.AttributeType.Tensor && a.T is { } t) CheckTensor(t, $"tensor attribute '{a.Name}' of {label}", problems);
        }
        if (node.Domain is not ("" or "ai.onnx")) return;   // custom domains: the runtime that provides them checks them
        if (!OnnxOps.Arity.TryGetValue(node.OpType, out var arity))
        {
            if (!OnnxOps.OtherStandardOps.Contains(node.OpType))
                problems.Add($"{label}: '{node.OpType}' is not an operator of the default ONNX domain.");
            return;
        }
        // Trailing empty names are omitted optional inputs.
        var inputs = node.Input.Count;
        while (inputs > 0 && node.Input[inputs - 1].Length == 0) inputs--;
        if (inputs < arity.MinInputs || inputs > arity.MaxInputs)
            problems.Add($"{label} has {inputs} input(s); {node.OpType} takes {(arity.MinInputs == arity.MaxInputs ? arity.MinInputs.ToString(System.Globalization.CultureInfo.InvariantCulture) : $"{arity.MinInputs} to {arity.MaxInputs}")}.");
        CheckParameterShapes(node, label, initializers, problems);
    }

    private static long[]? Ints(NodeProto node, string name) => node.Attribute.FirstOrDefault(a => a.Name == name)?.Ints.ToArray();

    private static long? Int(NodeProto node, string name) => node.Attribute.FirstOrDefault(a => a.Name == name)?.I;

    private static TensorProto? Initializer(NodeProto node, int index, Dictionary<string, TensorProto> initializers) =>
        index < node.Input.Count && initializers.TryGetValue(node.Input[index], out var t) ? t : null;

    /// <summary>Shape rules between an op's attributes and its constant parameters (where the parameters are initializers).</summary>
    private static void CheckParameterShapes(NodeProto node, string label, Dictionary<string, TensorProto> initializers, List<string> problems)
    {
        switch (node.OpType)
        {
            case "Conv":
            {
                if (Initializer(node, 1, initializers) is not { } w) return;
                if (w.Dims.Count < 3) { problems.Add($"{label}: the weight '{w.Name}' has rank {w.Dims.Count}; Conv weights are [M, C/group, k...]."); return; }
                if (Ints(node, "kernel_shape") is { Length: > 0 } kernel && !kernel.SequenceEqual(w.Dims.Skip(2)))
                    problems.Add($"{label}: kernel_shape [{string.Join(", ", kernel)}] does not match the weight '{w.Name}' [{string.Join(", ", w.Dims)}].");
                var group = Int(node, "group") is { } g and > 0 ? g : 1L;
                if (w.Dims[0] % group != 0) problems.Add($"{label}: {w.Dims[0]} output channels are not divisible by group = {group}.");
                if (Initializer(node, 2, initializers) is { } b && (b.Dims.Count != 1 || b.Dims[0] != w.Dims[0]))
                    problems.Add($"{label}: the bias '{b.Name}' has shape [{string.Join(", ", b.Dims)}]; expected [{w.Dims[0]}].");
                var spatial = w.Dims.Count - 2;
                foreach (var (attr, length) in new[] { ("strides", spatial), ("dilations", spatial), ("pads", 2 * spatial) })
                    if (Ints(node, attr) is { Length: > 0 } values && values.Length != length)
                        problems.Add($"{label}: '{attr}' has {values.Length} values; a {spatial}-D conv needs {length}.");
                break;
            }
            case "BatchNormalization":
            {
                var parameters = Enumerable.Range(1, 4).Select(i => Initializer(node, i, initializers)).OfType<TensorProto>().ToList();
                if (parameters.Any(p => p.Dims.Count != 1) || parameters.Select(p => p.Dims[0]).Distinct().Count() > 1)
                    problems.Add($"{label}: scale, bias, mean and variance must be 1-D of one length; got {string.Join(", ", parameters.Select(p => $"'{p.Name}' [{string.Join(", ", p.Dims)}]"))}.");
                break;
            }
            case "Gemm":
            {
                if (Initializer(node, 1, initializers) is not { } b) return;
                if (b.Dims.Count != 2) { problems.Add($"{label}: B '{b.Name}' has rank {b.Dims.Count}; Gemm needs a matrix."); return; }
                var n = Int(node, "transB") == 1 ? b.Dims[0] : b.Dims[1];
                if (Initializer(node, 2, initializers) is { } c && c.Dims.Count > 0 && c.Dims[^1] != n && c.Dims[^1] != 1)
                    problems.Add($"{label}: C '{c.Name}' [{string.Join(", ", c.Dims)}] does not broadcast to {n} output columns.");
                break;
            }
        }
    }
}
