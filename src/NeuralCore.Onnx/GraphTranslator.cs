using NeuralCore.Autograd;
using NeuralCore.Backends;
using NeuralCore.NN;
using NeuralCore.Onnx.Proto;
using static NeuralCore.Onnx.OnnxGraphBuilder;

namespace NeuralCore.Onnx;

/// <summary>
/// Turns one traced forward pass into an ONNX graph. Walks the recorded nodes in recording order (a topological
/// order), maps each traced tensor to an ONNX value name, and follows which axis of each value is the batch axis so
/// shapes can stay batch-independent (Reshape writes 0 for "keep the batch", Expand writes 1 for it).
/// </summary>
internal sealed class GraphTranslator
{
    private const string SupportedOps =
        "Conv2d, BatchNorm2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, the element-wise unary ops except comparisons, " +
        "Add/Sub/Mul/Div/Maximum/Minimum, Sum/Mean/Max/Min reductions, MatMul (Linear), Permute, Reshape/Flatten/Squeeze, " +
        "Concat, Narrow/Slice, Expand, Softmax, LogSoftmax";

    private readonly Module _model;
    private readonly Tensor _input;
    private readonly Tensor _output;
    private readonly OnnxExportOptions _options;
    private readonly OnnxGraphBuilder _b;
    private readonly List<(Tensor Tensor, string Name)> _state = [];
    private readonly Dictionary<Tensor, string> _stateNames = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<Tensor, string> _values = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<Tensor, int> _batchAxis = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<Module, string> _moduleNames = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<Tensor, List<Node>> _consumers = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<Node, Node> _bnFoldedInto = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<Node, (Tensor Weight, Node? BiasAdd)> _gemms = new(ReferenceEqualityComparer.Instance);
    private readonly HashSet<Node> _absorbed = new(ReferenceEqualityComparer.Instance);

    public GraphTranslator(Module model, Tensor input, Tensor output, OnnxExportOptions options)
    {
        _model = model;
        _input = input;
        _output = output;
        _options = options;
        _b = new OnnxGraphBuilder(options.BatchDimName, options.DynamicBatch);
        foreach (var (name, m) in model.NamedModules()) _moduleNames.TryAdd(m, name);
        foreach (var (name, p) in model.NamedParameters()) AddState(p, name);
        foreach (var (name, buffer) in model.NamedBuffers()) AddState(buffer, name);
    }

    private void AddState(Tensor t, string name)
    {
        if (!_stateNames.TryAdd(t, name)) return;
        _state.Add((t, name));
    }

    public GraphProto Translate()
    {
        using var _ = Autograd.Autograd.NoGrad();
        var nodes = OnnxExporter.CollectNodes(_output);
        if (nodes.Count == 0)
            throw new OnnxExportException($"Tracing recorded no ops: {_model.GetType().Name}.Forward returned its input (or a tensor it holds) unchanged, so there is no graph to export.");
        foreach (var node in nodes)
            foreach (var t in node.Inputs)
            {
                if (!_consumers.TryGetValue(t, out var list)) _consumers[t] = list = [];
                list.Add(node);
            }

        // Every name the graph will use verbatim is taken before any generated name is chosen.
        if (!_b.TryReserveValue(_options.InputName) || !_b.TryReserveValue(_options.OutputName))
            throw new ArgumentException("The input and output names must differ.");
        foreach (var (_, name) in _state)
            if (name == _options.InputName || name == _options.OutputName || !_b.TryReserveValue(name))
                throw new ArgumentException($"The model has a parameter or buffer named '{name}', which clashes with the graph's input or output name; choose other names in the export options.");

        if (_options.FoldBatchNorm) PlanBatchNormFolding(nodes);
        PlanGemms(nodes);

        _values[_input] = _options.InputName;
        _batchAxis[_input] = 0;
        _b.Graph.Name = _options.GraphName;
        _b.Graph.Input.Add(_b.ValueInfo(_options.InputName, _input.Shape, 0));
        foreach (var node in nodes)
            if (!_absorbed.Contains(node)) TranslateNode(node);

        // An output that is an alias of another value (a copy) still needs a node that produces the output name.
        if (_values[_output] != _options.OutputName)
            _b.AddNode("Identity", "", [_values[_output]], _options.OutputName);
        _b.Graph.Output.Add(_b.ValueInfo(_options.OutputName, _output.Shape, Axis(_output)));
        return _b.Graph;
    }

    // ---- planning ---------------------------------------------------------------------------------

    private int Uses(Tensor t) => (_consumers.TryGetValue(t, out var list) ? list.Count : 0) + (ReferenceEquals(t, _output) ? 1 : 0);

    private void PlanBatchNormFolding(List<Node> nodes)
    {
        foreach (var bn in nodes)
        {
            if (bn.Kind != OpKind.BatchNorm2d || bn.Attributes["training"] is true) continue;
            if (!bn.Attributes.ContainsKey("running_mean") || !bn.Attributes.ContainsKey("running_var")) continue;
            var x = bn.Inputs[0];
            if (x.GradFn is not { Kind: OpKind.Conv2d } conv || Uses(x) != 1) continue;
            // Only constant weights can be folded; a weight computed inside Forward stays a separate node.
            if (conv.Inputs.Skip(1).Any(t => t.GradFn is not null) || bn.Inputs.Skip(1).Any(t => t.GradFn is not null)) continue;
            _bnFoldedInto[conv] = bn;
            _absorbed.Add(bn);
        }
    }

    /// <summary>A Linear layer (x @ W^T + b with a 2-D x) becomes one Gemm with transB = 1.</summary>
    private void PlanGemms(List<Node> nodes)
    {
        foreach (var mm in nodes)
        {
            if (mm.Kind != OpKind.MatMul || mm.Inputs[0].Rank != 2) continue;
            var wt = mm.Inputs[1];
            if (wt.GradFn is not { Kind: OpKind.Permute } permute || Uses(wt) != 1) continue;
            var w = permute.Inputs[0];
            if (w.Rank != 2 || w.GradFn is not null) continue;
            _absorbed.Add(permute);
            Node? biasAdd = null;
            var y = mm.Output;
            if (Uses(y) == 1 && _consumers.TryGetValue(y, out var users) && users[0] is { Kind: OpKind.Binary } add
                && add.Attributes["op"] is BinaryOp.Add && add.Inputs.Count == 2)
            {
                var c = ReferenceEquals(add.Inputs[0], y) ? add.Inputs[1] : add.Inputs[0];
                var outFeatures = w.Size(0);
                if (c.GradFn is null && !ReferenceEquals(c, y) && c.NumElements == outFeatures && c.Rank <= 2 && c.Size(-1) == outFeatures)
                {
                    biasAdd = add;
                    _absorbed.Add(add);
                }
            }
            _gemms[mm] = (w, biasAdd);
        }
    }

    // ---- names ------------------------------------------------------------------------------------

    private int Axis(Tensor t) => _batchAxis.TryGetValue(t, out var a) ? a : -1;

    private string ModuleName(Node node) => node.Module is { } m && _moduleNames.TryGetValue(m, out var name) ? name : "";

    private string Scope(Node node)
    {
        var name = ModuleName(node);
        return name.Length == 0 ? "" : "/" + name.Replace('.', '/');
    }

    /// <summary>The ONNX value of <paramref name="t"/>: an earlier node's output, the graph input, or an initializer.</summary>
    private string Name(Tensor t)
    {
        if (_values.TryGetValue(t, out var name)) return name;
        if (t.GradFn is not null)
            throw new InvalidOperationException($"Internal error: a {t.GradFn.Kind} output was used before its node was translated.");
        if (_stateNames.TryGetValue(t, out name))
        {
            EmitInitializer(name, t);
            return _values[t] = name;
        }
        // A view that shares a parameter's storage and layout (e.g. a detached parameter) is that parameter.
        foreach (var (s, stateName) in _state)
            if (ReferenceEquals(s.Storage, t.Storage) && s.StorageOffset == t.StorageOffset
                && s.Shape.SequenceEqual(t.Shape) && s.Strides.SequenceEqual(t.Strides))
                return _values[t] = Name(s);
        name = _b.UniqueValueName("const_tensor");
        EmitInitializer(name, t);
        return _values[t] = name;
    }

    private void EmitInitializer(string name, Tensor t)
    {
        switch (t.DType)
        {
            case DType.Float32: _b.AddInitializer(name, t.Shape, t.ToArray()); break;
            case DType.Int64: _b.AddInitializer(name, t.Shape, t.ToInt64Array()); break;
            default: throw new OnnxExportException($"The tensor '{name}' has dtype {t.DType}; ONNX export writes Float32 and Int64 tensors only. Convert it with AsType(DType.Float32).");
        }
    }

    // ---- emitting ---------------------------------------------------------------------------------

    /// <summary>Emits the node that produces <paramref name="produced"/> (the op's output unless a fusion says otherwise).</summary>
    private void Emit(Node node, string opType, IEnumerable<string> inputs, int batchAxis, Tensor? produced = null, params AttributeProto[] attributes)
    {
        produced ??= node.Output;
        var isOutput = ReferenceEquals(produced, _output);
        var name = _b.AddNode(opType, Scope(node), inputs, isOutput ? _options.OutputName : null, attributes);
        _values[produced] = name;
        _batchAxis[produced] = batchAxis;
        if (!isOutput) _b.Graph.ValueInfo.Add(_b.ValueInfo(name, produced.Shape, batchAxis));
    }

    /// <summary>Emits a helper node of a multi-node lowering and returns its output value (with a value_info when the shape is given).</summary>
    private string EmitIntermediate(Node node, string opType, IEnumerable<string> inputs, int[]? shape, int batchAxis, params AttributeProto[] attributes)
    {
        var name = _b.AddNode(opType, Scope(node), inputs, attributes: attributes);
        if (shape is not null) _b.Graph.ValueInfo.Add(_b.ValueInfo(name, shape, batchAxis));
        return name;
    }

    /// <summary>An op that changes nothing in eval mode: its output is its input's value.</summary>
    private void Alias(Node node)
    {
        var x = node.Inputs[0];
        if (ReferenceEquals(node.Output, _output)) { Emit(node, "Identity", [Name(x)], Axis(x)); return; }
        _values[node.Output] = Name(x);
        _batchAxis[node.Output] = Axis(x);
    }

    private OnnxExportException Unsupported(Node node, string detail, string hint)
    {
        var moduleName = ModuleName(node);
        var where = node.Module is null
            ? "outside any module"
            : $"in module '{(moduleName.Length == 0 ? "(the model itself)" : moduleName)}' ({node.Module.GetType().Name})";
        return new OnnxExportException($"ONNX export cannot express the op {node.Kind}{detail} recorded {where}. {hint}", node.Kind, moduleName);
    }

    private OnnxExportException NotSupported(Node node, string detail) =>
        Unsupported(node, detail, $"The exporter supports {SupportedOps}; rewrite that part of Forward with these ops.");

    /// <summary>With a dynamic batch, an op that mixes the batch axis with others cannot be written batch-independently.</summary>
    private int BatchLost(Node node, string what)
    {
        if (_options.DynamicBatch)
            throw Unsupported(node, "", $"It {what}, so the graph would only run with the traced batch size. Keep the batch axis first and separate, or export with DynamicBatch = false (a fixed batch of TraceBatchSize).");
        return -1;
    }

    /// <summary>The batch axis of a broadcasting op's output (inputs aligned at the right, NumPy style).</summary>
    private int BroadcastAxis(Node node, IReadOnlyList<Tensor> inputs, int outRank, int? skipDim = null)
    {
        var axis = -1;
        foreach (var t in inputs)
        {
            var a = Axis(t);
            if (a < 0) continue;
            var aligned = a + outRank - t.Rank;
            if (axis >= 0 && axis != aligned) return BatchLost(node, "combines tensors whose batch axes do not line up");
            axis = aligned;
        }
        if (axis < 0 || !_options.DynamicBatch) return axis;
        foreach (var t in inputs)
        {
            var pos = axis - (outRank - t.Rank);
            // A tensor without a batch axis but with the traced batch size there was made for that one batch size.
            if (Axis(t) < 0 && pos >= 0 && pos != skipDim && t.Size(pos) != 1)
                return BatchLost(node, $"uses a tensor of shape {Tensor.FormatShape(t.Shape)} built inside Forward for the traced batch of {_input.Size(0)}");
        }
        return axis;
    }

    // ---- ops --------------------------------------------------------------------------------------

    private void TranslateNode(Node node)
    {
        var x = node.Inputs[0];
        switch (node.Kind)
        {
            case OpKind.Conv2d: Conv(node); break;
            case OpKind.BatchNorm2d: BatchNorm(node); break;
            case OpKind.MaxPool2d:
            case OpKind.AvgPool2d: Pool(node); break;
            case OpKind.AdaptiveAvgPool2d: AdaptivePool(node); break;
            case OpKind.Unary: Unary(node); break;
            case OpKind.Binary: Binary(node); break;
            case OpKind.Reduce: Reduce(node); break;
            case OpKind.MatMul: MatMul(node); break;
            case OpKind.Reshape: Reshape(node); break;
            case OpKind.Concat: Concat(node); break;
            case OpKind.Narrow: Slice(node); break;
            case OpKind.Expand: Expand(node); break;
            case OpKind.Copy:
            case OpKind.ToDevice: Alias(node); break;
            case OpKind.Permute:
                var dims = (int[])node.Attributes["dims"];
                Emit(node, "Transpose", [Name(x)], Axis(x) < 0 ? -1 : Array.IndexOf(dims, Axis(x)), attributes: Ints("perm", Longs(dims)));
                break;
            case OpKind.Softmax:
            case OpKind.LogSoftmax:
                Emit(node, node.Kind == OpKind.Softmax ? "Softmax" : "LogSoftmax", [Name(x)], Axis(x), attributes: Int("axis", -1));
                break;
            default:
                throw NotSupported(node, "");
        }
    }

    private static long[] Longs(IEnumerable<int> values) => values.Select(v => (long)v).ToArray();

    private static int[] IntsOf(Node node, string key) => (int[])node.Attributes[key];

    private void Conv(Node node)
    {
        var w = node.Inputs[1];
        var stride = IntsOf(node, "stride");
        var padding = IntsOf(node, "padding");
        var attributes = new[]
        {
            Ints("kernel_shape", w.Size(2), w.Size(3)),
            Ints("strides", Longs(stride)),
            Ints("pads", padding[0], padding[1], padding[0], padding[1]),
            Ints("dilations", Longs(IntsOf(node, "dilation"))),
            Int("group", (int)node.Attributes["groups"]),
        };
        var x = node.Inputs[0];
        if (_bnFoldedInto.TryGetValue(node, out var bn))
        {
            var (weight, bias) = FoldBatchNorm(node, bn);
            Emit(node, "Conv", [Name(x), weight, bias], Axis(x), bn.Output, attributes);
            return;
        }
        Emit(node, "Conv", node.Inputs.Select(Name).ToArray(), Axis(x), attributes: attributes);
    }

    /// <summary>
    /// Eval-mode BN after a conv is a per-channel affine map, so it folds into the conv:
    /// W'[k] = W[k] * s[k], b'[k] = (b[k] - mean[k]) * s[k] + beta[k] with s = gamma / sqrt(var + eps), in double.
    /// </summary>
    private (string Weight, string Bias) FoldBatchNorm(Node conv, Node bn)
    {
        var w = conv.Inputs[1];
        var bias = conv.Inputs.Count > 2 ? conv.Inputs[2].ToArray() : null;
        var gamma = bn.Inputs[1].ToArray();
        var beta = bn.Inputs[2].ToArray();
        var mean = ((Tensor)bn.Attributes["running_mean"]).ToArray();
        var variance = ((Tensor)bn.Attributes["running_var"]).ToArray();
        var eps = (double)(float)bn.Attributes["eps"];
        var weights = w.ToArray();
        var k = w.Size(0);
        var perChannel = weights.Length / k;
        var foldedBias = new float[k];
        for (var c = 0; c < k; c++)
        {
            var scale = gamma[c] / Math.Sqrt(variance[c] + eps);
            for (var i = c * perChannel; i < (c + 1) * perChannel; i++) weights[i] = (float)(weights[i] * scale);
            foldedBias[c] = (float)(((bias?[c] ?? 0.0) - mean[c]) * scale + beta[c]);
        }
        // Folded tensors are not the state dict's values, so they get their own names: in_c.0.weight_folded, in_c.0.bias_folded.
        var weightName = _stateNames.TryGetValue(w, out var n) ? n : ModuleName(conv) + ".weight";
        var biasName = (weightName.EndsWith(".weight", StringComparison.Ordinal) ? weightName[..^".weight".Length] : weightName) + ".bias";
        var wFolded = _b.UniqueValueName(weightName + "_folded");
        var bFolded = _b.UniqueValueName(biasName + "_folded");
        _b.AddInitializer(wFolded, w.Shape, weights);
        _b.AddInitializer(bFolded, [k], foldedBias);
        return (wFolded, bFolded);
    }

    private void BatchNorm(Node node)
    {
        if (node.Attributes["training"] is true)
            throw Unsupported(node, " in training mode", "Export traces the model in eval mode; a module that calls Functional.BatchNorm2d with training: true must follow Module.Training.");
        if (!node.Attributes.TryGetValue("running_mean", out var mean) || !node.Attributes.TryGetValue("running_var", out var variance))
            throw Unsupported(node, " without running statistics", "ONNX BatchNormalization needs the running mean and variance.");
        var x = node.Inputs[0];
        Emit(node, "BatchNormalization", [Name(x), Name(node.Inputs[1]), Name(node.Inputs[2]), Name((Tensor)mean), Name((Tensor)variance)],
            Axis(x), attributes: Float("epsilon", (float)node.Attributes["eps"]));
    }

    private void Pool(Node node)
    {
        var x = node.Inputs[0];
        var padding = IntsOf(node, "padding");
        var attributes = new List<AttributeProto>
        {
            Ints("kernel_shape", Longs(IntsOf(node, "kernel"))),
            Ints("strides", Longs(IntsOf(node, "stride"))),
            Ints("pads", padding[0], padding[1], padding[0], padding[1]),
            Int("ceil_mode", node.Attributes["ceil_mode"] is true ? 1 : 0),
        };
        // NeuralCore's average pool counts the zero padding, as PyTorch's default does.
        if (node.Kind == OpKind.AvgPool2d) attributes.Add(Int("count_include_pad", 1));
        var opType = node.Kind == OpKind.MaxPool2d ? "MaxPool" : "AveragePool";
        if (!CeilModeSizeIsAmbiguous(node))
        {
            Emit(node, opType, [Name(x)], Axis(x), attributes: attributes.ToArray());
            return;
        }
        // NOTE: in ceil mode PyTorch (and NeuralCore) drop a last window that would start in the end padding. ONNX
        // Runtime computes the same windows, but the shape inference of opsets 17-21 predicts one more, and a
        // value_info that contradicts it fails the load. So the pool output gets no declared shape, and a Slice to
        // the true size (a no-op at run time) gives every later value a shape both agree on.
        var pooled = EmitIntermediate(node, opType, [Name(x)], null, Axis(x), attributes.ToArray());
        long h = node.Output.Size(2), w = node.Output.Size(3);
        Emit(node, "Slice", [pooled, _b.Int64Vector(0, 0), _b.Int64Vector(h, w), _b.Int64Vector(2, 3)], Axis(x));
    }

    /// <summary>True when a ceil-mode pool's output is smaller than ceil((in + 2 pad - kernel) / stride) + 1.</summary>
    private static bool CeilModeSizeIsAmbiguous(Node node)
    {
        if (node.Attributes["ceil_mode"] is not true) return false;
        var kernel = IntsOf(node, "kernel");
        var stride = IntsOf(node, "stride");
        var padding = IntsOf(node, "padding");
        for (var i = 0; i < 2; i++)
        {
            var span = node.Inputs[0].Size(2 + i) + 2 * padding[i] - kernel[i];
            if ((span + stride[i] - 1) / stride[i] + 1 != node.Output.Size(2 + i)) return true;
        }
        return false;
    }

    private void AdaptivePool(Node node)
    {
        var x = node.Inputs[0];
        var size = IntsOf(node, "output_size");
        if (size[0] == 1 && size[1] == 1) { Emit(node, "GlobalAveragePool", [Name(x)], Axis(x)); return; }
        // Recorded only when the cells tile the input evenly: a plain average pool with kernel = stride = cell size.
        long kh = x.Size(2) / size[0], kw = x.Size(3) / size[1];
        Emit(node, "AveragePool", [Name(x)], Axis(x), attributes: [Ints("kernel_shape", kh, kw), Ints("strides", kh, kw)]);
    }

    private void Unary(Node node)
    {
        var x = node.Inputs[0];
        var op = (UnaryOp)node.Attributes["op"];
        var alpha = (float)node.Attributes["alpha"];
        var beta = (float)node.Attributes["beta"];
        var ax = Axis(x);
        var input = Name(x);
        switch (op)
        {
            case UnaryOp.Relu: Emit(node, "Relu", [input], ax); break;
            case UnaryOp.Relu6: Emit(node, "Clip", [input, _b.FloatScalar(0), _b.FloatScalar(6)], ax); break;
            case UnaryOp.Clamp:
                var min = float.IsNegativeInfinity(alpha) ? "" : _b.FloatScalar(alpha);
                string[] clipInputs = float.IsPositiveInfinity(beta) ? [input, min] : [input, min, _b.FloatScalar(beta)];
                Emit(node, "Clip", clipInputs, ax);
                break;
            case UnaryOp.Hardswish: Emit(node, "HardSwish", [input], ax); break;
            case UnaryOp.Sigmoid: Emit(node, "Sigmoid", [input], ax); break;
            case UnaryOp.Tanh: Emit(node, "Tanh", [input], ax); break;
            case UnaryOp.Neg: Emit(node, "Neg", [input], ax); break;
            case UnaryOp.Exp: Emit(node, "Exp", [input], ax); break;
            case UnaryOp.Log: Emit(node, "Log", [input], ax); break;
            case UnaryOp.Sqrt: Emit(node, "Sqrt", [input], ax); break;
            case UnaryOp.Abs: Emit(node, "Abs", [input], ax); break;
            case UnaryOp.Sign: Emit(node, "Sign", [input], ax); break;
            case UnaryOp.Square: Emit(node, "Mul", [input, input], ax); break;
            case UnaryOp.Pow: Emit(node, "Pow", [input, _b.FloatScalar(alpha)], ax); break;
            case UnaryOp.Reciprocal:
                if (alpha == 1) Emit(node, "Reciprocal", [input], ax);
                else Emit(node, "Div", [_b.FloatScalar(alpha), input], ax);
                break;
            case UnaryOp.Affine:
                if (alpha != 1 && beta != 0)
                {
                    var scaled = EmitIntermediate(node, "Mul", [input, _b.FloatScalar(alpha)], x.ShapeArray(), ax);
                    Emit(node, "Add", [scaled, _b.FloatScalar(beta)], ax);
                }
                else if (alpha != 1) Emit(node, "Mul", [input, _b.FloatScalar(alpha)], ax);
                else if (beta != 0) Emit(node, "Add", [input, _b.FloatScalar(beta)], ax);
                else Alias(node);
                break;
            default:
                throw NotSupported(node, $" ({op})");
        }
    }

    private void Binary(Node node)
    {
        var op = (BinaryOp)node.Attributes["op"];
        var opType = op switch
        {
            BinaryOp.Add => "Add",
            BinaryOp.Sub => "Sub",
            BinaryOp.Mul => "Mul",
            BinaryOp.Div => "Div",
            BinaryOp.Maximum => "Max",
            BinaryOp.Minimum => "Min",
            _ => throw Unsupported(node, $" ({op})", "Comparisons give Bool tensors in ONNX and have no gradient in NeuralCore; compute masks outside the model."),
        };
        Emit(node, opType, node.Inputs.Select(Name).ToArray(), BroadcastAxis(node, node.Inputs, node.Output.Rank));
    }

    private void Reduce(Node node)
    {
        var x = node.Inputs[0];
        var op = (ReduceOp)node.Attributes["op"];
        var dims = IntsOf(node, "dims");
        var keep = (bool)node.Attributes["keepdim"];
        var ax = Axis(x);
        var outAxis = ax < 0 ? -1
            : dims.Contains(ax) ? BatchLost(node, "reduces over the batch axis")
            : keep ? ax : ax - dims.Count(d => d < ax);
        if (op == ReduceOp.Mean && x.Rank == 4 && dims.SequenceEqual([2, 3]))
        {
            // Mean over H and W is a global average pool ([N, C, 1, 1]); without keepdim, Flatten gives [N, C].
            if (keep) { Emit(node, "GlobalAveragePool", [Name(x)], outAxis); return; }
            var pooled = EmitIntermediate(node, "GlobalAveragePool", [Name(x)], [x.Size(0), x.Size(1), 1, 1], ax);
            Emit(node, "Flatten", [pooled], outAxis, attributes: Int("axis", 1));
            return;
        }
        var opType = op switch
        {
            ReduceOp.Sum => "ReduceSum",
            ReduceOp.Mean => "ReduceMean",
            ReduceOp.Max => "ReduceMax",
            _ => "ReduceMin",
        };
        // The axes became an input in opset 13 for ReduceSum and in opset 18 for the others.
        var keepDims = Int("keepdims", keep ? 1 : 0);
        if (op == ReduceOp.Sum || _options.Opset >= 18)
            Emit(node, opType, [Name(x), _b.Int64Vector(Longs(dims))], outAxis, attributes: keepDims);
        else
            Emit(node, opType, [Name(x)], outAxis, attributes: [Ints("axes", Longs(dims)), keepDims]);
    }

    private void MatMul(Node node)
    {
        var a = node.Inputs[0];
        var b = node.Inputs[1];
        if (_gemms.TryGetValue(node, out var gemm))
        {
            var axis = Axis(a) switch { 0 => 0, < 0 => -1, _ => BatchLost(node, "multiplies along the batch axis") };
            var inputs = new List<string> { Name(a), Name(gemm.Weight) };
            if (gemm.BiasAdd is { } add)
                inputs.Add(Name(ReferenceEquals(add.Inputs[0], node.Output) ? add.Inputs[1] : add.Inputs[0]));
            Emit(node, "Gemm", inputs, axis, gemm.BiasAdd?.Output, Int("transB", 1));
            return;
        }
        int ra = a.Rank, rb = b.Rank, r = node.Output.Rank;
        int aa = Axis(a), ab = Axis(b), outAxis = -1;
        if (aa >= 0) outAxis = aa == ra - 1 ? BatchLost(node, "multiplies along the batch axis") : aa + r - ra;
        if (ab >= 0)
        {
            var fromB = ab == rb - 2 ? BatchLost(node, "multiplies along the batch axis") : ab + r - rb;
            if (outAxis >= 0 && fromB != outAxis) outAxis = BatchLost(node, "combines operands whose batch axes do not line up");
            else outAxis = fromB;
        }
        Emit(node, "MatMul", [Name(a), Name(b)], outAxis);
    }

    private void Reshape(Node node)
    {
        var x = node.Inputs[0];
        var shape = node.Output.ShapeArray();
        var ax = Axis(x);
        if (ax < 0 || (!_options.DynamicBatch && (ax != 0 || shape.Length == 0 || shape[0] != x.Size(0))))
        {
            Emit(node, "Reshape", [Name(x), _b.Int64Vector(Longs(shape))], -1);
            return;
        }
        if (ax != 0 || shape.Length == 0 || shape[0] != x.Size(0))
        {
            BatchLost(node, $"reshapes {Tensor.FormatShape(x.Shape)} to {Tensor.FormatShape(shape)}, moving or merging the batch axis {ax}");
            return;
        }
        // [N, ...] -> [N, k]: Flatten; otherwise Reshape with 0 = "copy the input's batch size".
        if (shape.Length == 2) { Emit(node, "Flatten", [Name(x)], 0, attributes: Int("axis", 1)); return; }
        var spec = Longs(shape);
        spec[0] = 0;
        Emit(node, "Reshape", [Name(x), _b.Int64Vector(spec)], 0);
    }

    private void Concat(Node node)
    {
        var dim = (int)node.Attributes["dim"];
        var axis = BroadcastAxis(node, node.Inputs, node.Output.Rank, skipDim: dim);
        if (axis >= 0 && axis == dim) axis = BatchLost(node, "concatenates along the batch axis");
        Emit(node, "Concat", node.Inputs.Select(Name).ToArray(), axis, attributes: Int("axis", dim));
    }

    private void Slice(Node node)
    {
        var x = node.Inputs[0];
        var dim = (int)node.Attributes["dim"];
        var start = (int)node.Attributes["start"];
        var length = (int)node.Attributes["length"];
        var ax = Axis(x);
        if (ax >= 0 && ax == dim) ax = BatchLost(node, "slices the batch axis");
        Emit(node, "Slice", [Name(x), _b.Int64Vector(start), _b.Int64Vector(start + length), _b.Int64Vector(dim)], ax);
    }

    private void Expand(Node node)
    {
        var x = node.Inputs[0];
        var spec = Longs(node.Output.ShapeArray());
        var ax = Axis(x);
        var outAxis = ax < 0 ? -1 : ax + spec.Length - x.Rank;
        // ONNX Expand broadcasts both ways, so a 1 keeps whatever batch size the input has.
        if (outAxis >= 0 && _options.DynamicBatch) spec[outAxis] = 1;
        Emit(node, "Expand", [Name(x), _b.Int64Vector(spec)], outAxis);
    }
}
