using System.Globalization;
using System.Text;
using NeuralCore.Autograd;

namespace NeuralCore.NN;

/// <summary>One module's line in a <see cref="ModelSummary"/>.</summary>
/// <param name="Name">Dotted module name (the state-dict prefix), e.g. <c>stage1.block1.conv1</c>; empty for the model itself.</param>
/// <param name="Type">The module's class name, e.g. <c>Conv2d</c>.</param>
/// <param name="Depth">Nesting depth: 1 for the model's direct children, 0 for the model itself.</param>
/// <param name="OutputShape">Shape of the module's output for a batch of one, or null when it recorded no op (an identity such as an empty shortcut, or a module the forward pass never called).</param>
/// <param name="Parameters">Elements of the module's own parameters (its children's are on their own lines).</param>
/// <param name="Macs">Multiply-accumulates of the module's own parameters for one sample, counted as torchinfo does (see <see cref="ModelSummary"/>).</param>
/// <param name="ConvMacs">The convolution MACs among <paramref name="Macs"/>: Cin/groups x Cout x kh x kw x Hout x Wout, without the bias.</param>
public sealed record LayerSummary(string Name, string Type, int Depth, int[]? OutputShape, long Parameters, long Macs, long ConvMacs);

/// <summary>
/// Size and cost of a model, found by tracing one forward pass on a batch of one (torchinfo's <c>summary</c>):
/// the parameter count, the multiply-accumulate operations (MACs) per sample, and a table of the modules.
/// </summary>
/// <remarks>
/// <para>
/// MACs are counted per parameter, the way torchinfo's <c>LayerInfo.calculate_macs</c> does, so NeuralCore and
/// torchinfo (and the DCASE complexity calculator NeSsi, which uses it) report the same figures:
/// </para>
/// <list type="bullet">
/// <item>A parameter used by a convolution (its weight or bias) costs numel x Hout x Wout of that convolution's output.
/// For the weight that is Cin/groups x Cout x kh x kw x Hout x Wout; a bias adds Cout x Hout x Wout.</item>
/// <item>Every other parameter of a module that ran (batch-norm gamma and beta, a linear layer's weight and bias)
/// costs its numel once per sample: a BatchNorm2d(C) costs 2C, a Linear(in, out) costs in x out + out. (torchinfo
/// multiplies by the first output dimension, the batch, which is 1 here; for a linear layer applied to a sequence
/// it therefore counts one position, and so does this summary.)</item>
/// <item>Operations without parameters (activations, pooling, residual additions, reshapes) cost 0.</item>
/// </list>
/// <para>
/// <see cref="ConvMacs"/> counts the convolution weights only (no bias, no batch norm): the figure the DCASE papers and
/// the CP-ResNet tables quote. Each module line's parameters and MACs are its own (not its children's), so the
/// columns add up to <see cref="TotalParameters"/> and <see cref="TotalMacs"/>.
/// </para>
/// </remarks>
public sealed class ModelSummary
{
    private ModelSummary(int[] inputShape, int[] outputShape, long totalParameters, long totalMacs, long convMacs, IReadOnlyList<LayerSummary> layers)
    {
        InputShape = inputShape;
        OutputShape = outputShape;
        TotalParameters = totalParameters;
        TotalMacs = totalMacs;
        ConvMacs = convMacs;
        Layers = layers;
    }

    /// <summary>The input shape the summary was traced with, including the batch dimension of 1, e.g. [1, 1, 28, 28].</summary>
    public int[] InputShape { get; }

    /// <summary>The model's output shape for that input, e.g. [1, 10].</summary>
    public int[] OutputShape { get; }

    /// <summary>Elements of all learnable parameters (<see cref="Module.ParameterCount"/>; buffers such as running statistics do not count).</summary>
    public long TotalParameters { get; }

    /// <summary>All multiply-accumulates per sample, counted as torchinfo does (see the remarks).</summary>
    public long TotalMacs { get; }

    /// <summary>Convolution multiply-accumulates per sample: the sum over convolutions of Cin/groups x Cout x kh x kw x Hout x Wout.</summary>
    public long ConvMacs { get; }

    /// <summary>One line per module (the model itself first when it owns parameters or MACs), in registration order.</summary>
    public IReadOnlyList<LayerSummary> Layers { get; }

    /// <summary>
    /// Traces one forward pass of <paramref name="model"/> in eval mode on a batch of one zero input of shape
    /// [1, ...<paramref name="inputShape"/>] (on the device of the model's parameters) and summarises it. The
    /// model's training flags are restored afterwards; its running statistics are not changed (eval mode).
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="inputShape">The shape of one sample without the batch dimension, e.g. [1, 28, 28].</param>
    /// <exception cref="ArgumentException">The input shape is empty or has a non-positive size.</exception>
    public static ModelSummary Summarize(Module model, int[] inputShape)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputShape);
        if (inputShape.Length == 0 || inputShape.Any(s => s <= 0))
            throw new ArgumentException($"Summarize needs the shape of one sample without the batch dimension, e.g. [1, 28, 28]; got {Tensor.FormatShape(inputShape)}.", nameof(inputShape));

        var modules = model.NamedModules().ToList();
        var names = new Dictionary<Module, string>(ReferenceEqualityComparer.Instance);
        foreach (var (name, module) in modules) names.TryAdd(module, name);
        var device = model.Parameters().Select(p => (Device?)p.Device).Concat(model.Buffers().Select(b => (Device?)b.Device)).FirstOrDefault() ?? Device.Cpu;

        var modes = modules.Select(m => m.Module.Training).ToList();
        Tensor output;
        try
        {
            model.Eval();
            using var noGrad = Autograd.Autograd.NoGrad();
            using var trace = Autograd.Autograd.Trace();
            output = model.Call(Tensor.Zeros([1, .. inputShape], device));
        }
        finally
        {
            // Parents first: Train(mode) recurses, and each child then gets its own flag back.
            for (var i = 0; i < modules.Count; i++) modules[i].Module.Train(modes[i]);
        }

        var nodes = CollectNodes(output);
        var macs = new Dictionary<string, long>();
        var convMacs = new Dictionary<string, long>();
        var lastNode = new Dictionary<string, Node>();
        var executed = new HashSet<string>();
        var convParameters = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        foreach (var node in nodes)
        {
            var owner = node.Module is { } m && names.TryGetValue(m, out var n) ? n : "";
            executed.Add(owner);
            foreach (var scope in SelfAndAncestors(owner))
                if (!lastNode.TryGetValue(scope, out var last) || last.Sequence < node.Sequence) lastNode[scope] = node;
            if (node.Kind != OpKind.Conv2d) continue;
            // Output [N, K, P, Q] with N = 1: every parameter element is used once per output position.
            long positions = (long)node.Output.Size(2) * node.Output.Size(3);
            for (var i = 1; i < node.Inputs.Count; i++)
            {
                var parameter = node.Inputs[i];
                if (parameter is Parameter) convParameters.Add(parameter);
                Add(macs, owner, parameter.NumElements * positions);
                if (i == 1) Add(convMacs, owner, parameter.NumElements * positions);
            }
        }
        foreach (var (name, module) in modules)
        {
            if (!executed.Contains(name)) continue;
            foreach (var p in module.Parameters(recurse: false))
                if (!convParameters.Contains(p)) Add(macs, name, p.NumElements);
        }

        var layers = new List<LayerSummary>();
        foreach (var (name, module) in modules)
        {
            long own = module.Parameters(recurse: false).Sum(p => (long)p.NumElements);
            long ownMacs = macs.GetValueOrDefault(name);
            if (name.Length == 0 && own == 0 && ownMacs == 0) continue;
            layers.Add(new LayerSummary(name, module.GetType().Name, name.Length == 0 ? 0 : name.Count(c => c == '.') + 1,
                lastNode.TryGetValue(name, out var last) ? last.Output.ShapeArray() : null, own, ownMacs, convMacs.GetValueOrDefault(name)));
        }
        return new ModelSummary([1, .. inputShape], output.ShapeArray(), model.ParameterCount(), macs.Values.Sum(), convMacs.Values.Sum(), layers);
    }

    private static void Add(Dictionary<string, long> totals, string key, long value) => totals[key] = totals.GetValueOrDefault(key) + value;

    /// <summary>"a.b.c", "a.b", "a" and "" (the model).</summary>
    private static IEnumerable<string> SelfAndAncestors(string name)
    {
        yield return name;
        while (name.Length > 0)
        {
            var dot = name.LastIndexOf('.');
            name = dot < 0 ? "" : name[..dot];
            yield return name;
        }
    }

    /// <summary>Every node the output depends on (each once).</summary>
    private static List<Node> CollectNodes(Tensor output)
    {
        var result = new List<Node>();
        if (output.GradFn is null) return result;
        var seen = new HashSet<Node>(ReferenceEqualityComparer.Instance) { output.GradFn };
        var stack = new Stack<Node>([output.GradFn]);
        while (stack.Count > 0)
        {
            var node = stack.Pop();
            result.Add(node);
            foreach (var input in node.Inputs)
                if (input.GradFn is { } f && seen.Add(f)) stack.Push(f);
        }
        return result;
    }

    /// <summary>
    /// The summary as a text table: one line per module, indented by depth, with its type, output shape, own
    /// parameters and MACs, then the totals.
    /// </summary>
    public string ToTable()
    {
        static string Number(long v) => v == 0 ? "--" : v.ToString("N0", CultureInfo.InvariantCulture);
        var rows = Layers.Select(l => (
            Layer: new string(' ', 2 * Math.Max(l.Depth - 1, 0)) + (l.Name.Length == 0 ? "(model)" : l.Name) + " (" + l.Type + ")",
            Shape: l.OutputShape is null ? "--" : Tensor.FormatShape(l.OutputShape),
            Params: Number(l.Parameters),
            Macs: Number(l.Macs))).ToList();
        string[] headers = ["Layer (type)", "Output shape", "Param #", "MACs"];
        int w0 = rows.Select(r => r.Layer.Length).Append(headers[0].Length).Max();
        int w1 = rows.Select(r => r.Shape.Length).Append(headers[1].Length).Max();
        int w2 = rows.Select(r => r.Params.Length).Append(headers[2].Length).Max();
        int w3 = rows.Select(r => r.Macs.Length).Append(headers[3].Length).Max();
        var rule = new string('-', w0 + w1 + w2 + w3 + 6);
        var sb = new StringBuilder();
        sb.AppendLine(rule);
        sb.AppendLine($"{headers[0].PadRight(w0)}  {headers[1].PadRight(w1)}  {headers[2].PadLeft(w2)}  {headers[3].PadLeft(w3)}");
        sb.AppendLine(rule);
        foreach (var r in rows)
            sb.AppendLine($"{r.Layer.PadRight(w0)}  {r.Shape.PadRight(w1)}  {r.Params.PadLeft(w2)}  {r.Macs.PadLeft(w3)}");
        sb.AppendLine(rule);
        sb.AppendLine(CultureInfo.InvariantCulture, $"Input shape: {Tensor.FormatShape(InputShape)}    Output shape: {Tensor.FormatShape(OutputShape)}");
        sb.AppendLine(CultureInfo.InvariantCulture, $"Total parameters: {TotalParameters:N0}");
        sb.AppendLine(CultureInfo.InvariantCulture, $"Total MACs (torchinfo rule): {TotalMacs:N0}");
        sb.AppendLine(CultureInfo.InvariantCulture, $"Convolution MACs: {ConvMacs:N0}");
        sb.Append(rule);
        return sb.ToString();
    }

    /// <inheritdoc />
    public override string ToString() => ToTable();
}
