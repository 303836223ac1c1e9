using NeuralCore.IO;
using NeuralCore.NN;

namespace NeuralCore.Models;

// Shapes: input [N, InputChannels, F, T] (MNIST: [N, 1, 28, 28]; mel: [N, 1, 128, 100]); output logits [N, classes].

/// <summary>
/// CP-ResNet, the receptive-field-regularised ResNet of the CPJKU DCASE systems, as the seed's <c>cp_resnet.py</c>
/// builds it: stem <c>in_c</c> (5x5 conv, stride 2, padding 1, BN, Hardswish), three stages of basic blocks with
/// max pools in stage 1, and the head <c>feed_forward</c> (1x1 conv to the classes, BN, global average pool).
/// Parameter names equal the seed's PyTorch <c>state_dict</c> keys, so weights move between the two.
/// </summary>
/// <remarks>
/// <para>
/// Layers read their channel counts from their weights; nothing here caches a width, so the structural pruner can
/// shrink the model in place. A pruned model reloads from a checkpoint whose metadata holds the config it was built
/// from (<see cref="LoadCheckpoint(string, bool)"/> adopts the stored tensors' shapes).
/// </para>
/// <para>
/// Initialisation (the seed's): every conv Kaiming-normal (fan_in, ReLU gain), BN weight 1 and bias 0, head conv
/// zero; then in each basic block conv1 ~ N(0, L^-1/2 * sqrt(2/n)) with n = k*k*out_channels of conv1 and L the
/// number of blocks, conv2 zero, and the shortcut conv ~ N(0, sqrt(2/n)) with n = out_channels (1x1).
/// </para>
/// </remarks>
public sealed class CpResNet : Module
{
    /// <summary>Builds and initialises the network.</summary>
    /// <param name="config">The architecture (validated).</param>
    /// <param name="generator">Random source for the initialisation (default <see cref="Generator.Default"/>).</param>
    /// <exception cref="ArgumentException">A setting of <paramref name="config"/> is out of range.</exception>
    public CpResNet(CpResNetConfig config, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
        generator ??= Generator.Default;
        var widths = config.ChannelWidths;

        InC = RegisterModule("in_c", new Sequential(
            new Conv2d(config.InputChannels, widths[0], 5, stride: 2, padding: 1, bias: false, generator: generator),
            new BatchNorm2d(widths[0]),
            config.StemActivation == "relu" ? new ReLU() : new Hardswish()));

        var stages = new NamedSequential[3];
        var inChannels = widths[0];
        for (var s = 0; s < 3; s++)
        {
            var stage = new NamedSequential();
            // Stage-1 pool positions {0, 1, 2, 4}: 0 is a 2x2 pool before block 1, i a (2, 1) pool after block i.
            int[] poolPositions = s == 0 ? [0, 1, 2, 4] : [];
            if (poolPositions.Contains(0)) stage.Add("maxpool0_0", new MaxPool2d(2, 2));
            for (var b = 0; b < config.BlocksPerStage[s]; b++)
            {
                var (k1, k2) = config.KernelSizes(s, b);
                stage.Add($"block{b + 1}", new BasicBlock(inChannels, widths[s], k1, k2, config.GroupsPerStage[s], generator));
                inChannels = widths[s];
                var poolIndex = Array.IndexOf(poolPositions, b + 1);
                if (poolIndex >= 0) stage.Add($"maxpool{b + 1}_{poolIndex}", new MaxPool2d((2, 1), (2, 1)));
            }
            stages[s] = RegisterModule($"stage{s + 1}", stage);
        }
        Stage1 = stages[0];
        Stage2 = stages[1];
        Stage3 = stages[2];

        FeedForward = RegisterModule("feed_forward", new Sequential(
            new Conv2d(widths[2], config.NumClasses, 1, bias: false, generator: generator),
            new BatchNorm2d(config.NumClasses),
            new AdaptiveAvgPool2d(1)));

        InitializeWeights(generator);
    }

    /// <summary>The architecture this network was built from (a pruned network keeps its original config).</summary>
    public CpResNetConfig Config { get; }

    /// <summary>The stem <c>in_c</c>: Conv 5x5 stride 2 (<c>in_c.0</c>), BN (<c>in_c.1</c>), activation (<c>in_c.2</c>).</summary>
    public Sequential InC { get; }

    /// <summary>Stage 1: max pools and two basic blocks.</summary>
    public NamedSequential Stage1 { get; }

    /// <summary>Stage 2: two basic blocks (the first widens C0 to C1).</summary>
    public NamedSequential Stage2 { get; }

    /// <summary>Stage 3: two basic blocks (the first widens C1 to C2).</summary>
    public NamedSequential Stage3 { get; }

    /// <summary>The head <c>feed_forward</c>: Conv 1x1 to the classes (<c>.0</c>), BN (<c>.1</c>), global average pool (<c>.2</c>).</summary>
    public Sequential FeedForward { get; }

    /// <summary>All basic blocks in forward order.</summary>
    public IEnumerable<BasicBlock> Blocks() => new[] { Stage1, Stage2, Stage3 }.SelectMany(s => s.NamedChildren().Select(c => c.Module).OfType<BasicBlock>());

    private void InitializeWeights(Generator generator)
    {
        using var _ = Autograd.Autograd.NoGrad();
        foreach (var (_, module) in NamedModules())
        {
            if (module is Conv2d conv) Init.KaimingNormal(conv.Weight, mode: FanMode.FanIn, nonlinearity: Nonlinearity.Relu, generator: generator);
            else if (module is BatchNorm2d bn) { Init.Ones(bn.Weight); Init.Zeros(bn.Bias); }
        }
        Init.Zeros(((Conv2d)FeedForward[0]).Weight);

        var blocks = Config.TotalBlocks;
        foreach (var block in Blocks())
        {
            var k = block.Conv1.KernelSize;
            var n = k.H * k.W * block.Conv1.OutChannels;
            Init.Normal(block.Conv1.Weight, 0, Math.Pow(blocks, -0.5) * Math.Sqrt(2.0 / n), generator);
            Init.Zeros(block.Conv2.Weight);
            if (block.ShortcutConv is { } sc)
            {
                var ks = sc.KernelSize;
                Init.Normal(sc.Weight, 0, Math.Sqrt(2.0 / (ks.H * ks.W * sc.OutChannels)), generator);
            }
        }
    }

    /// <inheritdoc />
    public override Tensor Forward(Tensor input)
    {
        if (input.Rank != 4)
            throw new ArgumentException($"CP-ResNet expects an input [N, {Config.InputChannels}, F, T], got shape {Tensor.FormatShape(input.Shape)}.", nameof(input));
        var x = InC.Call(input);
        x = Stage1.Call(x);
        x = Stage2.Call(x);
        x = Stage3.Call(x);
        x = FeedForward.Call(x);
        // [N, classes, 1, 1] -> [N, classes]
        return x.Flatten(1);
    }

    /// <summary>
    /// Loads a checkpoint written by <see cref="TensorIO.Save"/> with <see cref="CpResNetConfig.ToMetadata"/>: builds
    /// the network from the config in the file's metadata and loads the tensors, adopting their shapes (so a pruned
    /// checkpoint loads without the original).
    /// </summary>
    /// <param name="path">A .safetensors file.</param>
    /// <param name="strict">Require every key to match (see <see cref="Module.LoadStateDict"/>).</param>
    /// <exception cref="InvalidDataException">The metadata holds no CP-ResNet config; the message says how to give one.</exception>
    public static CpResNet LoadCheckpoint(string path, bool strict = true)
    {
        var (tensors, metadata) = TensorIO.LoadSafeTensors(path);
        CpResNetConfig config;
        try
        {
            config = CpResNetConfig.FromMetadata(metadata);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"'{path}': {e.Message}", e);
        }
        return FromStateDict(tensors, config, strict);
    }

    /// <summary>
    /// Loads CP-ResNet weights from a safetensors file without (or ignoring) a stored config, e.g. weights exported from
    /// the seed's PyTorch model, building the network from <paramref name="config"/>.
    /// </summary>
    public static CpResNet LoadCheckpoint(string path, CpResNetConfig config, bool strict = true) =>
        FromStateDict(TensorIO.LoadSafeTensors(path).Tensors, config, strict);

    /// <summary>
    /// Builds a network from <paramref name="config"/> and loads <paramref name="state"/>, a state dict with the seed's
    /// key names (PyTorch's Int64 <c>num_batches_tracked</c> loads as is; F64/F16 tensors read from files arrive as
    /// Float32). Tensors whose shapes differ from the config's (a pruned model) are adopted. When the keys carry a
    /// wrapper prefix, as in a Lightning checkpoint (<c>model.in_c.0.weight</c>), the prefix is found from
    /// <c>in_c.0.weight</c> and stripped, and keys outside it are ignored.
    /// </summary>
    /// <exception cref="KeyNotFoundException">Strict loading and a key is missing or unexpected.</exception>
    public static CpResNet FromStateDict(IReadOnlyDictionary<string, Tensor> state, CpResNetConfig config, bool strict = true)
    {
        ArgumentNullException.ThrowIfNull(state);
        // A private generator: the initial values are overwritten, and the process-wide stream stays untouched.
        var model = new CpResNet(config, new Generator(0));
        model.LoadStateDict(StripPrefix(state), strict, adoptShapes: true);
        return model;
    }

    private static IReadOnlyDictionary<string, Tensor> StripPrefix(IReadOnlyDictionary<string, Tensor> state)
    {
        const string anchor = "in_c.0.weight";
        if (state.ContainsKey(anchor)) return state;
        var key = state.Keys.Where(k => k.EndsWith("." + anchor, StringComparison.Ordinal)).OrderBy(k => k.Length).FirstOrDefault();
        if (key is null) return state;
        var prefix = key[..^anchor.Length];
        return state.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal)).ToDictionary(kv => kv.Key[prefix.Length..], kv => kv.Value);
    }
}

/// <summary>
/// Runs named children in registration order (PyTorch's <c>nn.Sequential</c> built with named modules, as
/// <c>add_module</c> does): CP-ResNet's stages (<c>block1</c>, <c>block2</c> and max pools) and shortcuts
/// (<c>conv</c>, <c>bn</c>). With no children it is the identity.
/// </summary>
public sealed class NamedSequential : Module
{
    /// <summary>Appends <paramref name="module"/> under <paramref name="name"/> and returns this container.</summary>
    public NamedSequential Add(string name, Module module)
    {
        RegisterModule(name, module);
        return this;
    }

    /// <summary>Number of children.</summary>
    public int Count => NamedChildren().Count();

    /// <summary>The child named <paramref name="name"/>, or null.</summary>
    public Module? this[string name] => NamedChildren().Where(c => c.Name == name).Select(c => c.Module).FirstOrDefault();

    /// <inheritdoc />
    public override Tensor Forward(Tensor input)
    {
        var x = input;
        foreach (var (_, child) in NamedChildren()) x = child.Call(x);
        return x;
    }
}

/// <summary>
/// CP-ResNet's basic block: y = relu(bn1(conv1(x))), y = bn2(conv2(y)), out = relu(y + shortcut(x)). The
/// convolutions are bias-free with padding k/3 (3 -> 1, 1 -> 0); the shortcut is identity when the widths agree,
/// else a 1x1 conv (<c>shortcut.conv</c>) and BN (<c>shortcut.bn</c>).
/// </summary>
public sealed class BasicBlock : Module
{
    /// <summary>Creates the block (initialised as PyTorch layers; <see cref="CpResNet"/> re-initialises it).</summary>
    /// <param name="inChannels">Input channels.</param>
    /// <param name="outChannels">Output channels.</param>
    /// <param name="k1">Kernel size of conv1.</param>
    /// <param name="k2">Kernel size of conv2.</param>
    /// <param name="groups">Groups of conv1 and conv2.</param>
    /// <param name="generator">Random source of the layers' initialisation.</param>
    public BasicBlock(int inChannels, int outChannels, int k1, int k2, int groups = 1, Generator? generator = null)
    {
        Conv1 = RegisterModule("conv1", new Conv2d(inChannels, outChannels, k1, padding: k1 / 3, groups: groups, bias: false, generator: generator));
        Bn1 = RegisterModule("bn1", new BatchNorm2d(outChannels));
        Conv2 = RegisterModule("conv2", new Conv2d(outChannels, outChannels, k2, padding: k2 / 3, groups: groups, bias: false, generator: generator));
        Bn2 = RegisterModule("bn2", new BatchNorm2d(outChannels));
        // An empty Sequential is the identity, as in the seed; it owns no state-dict keys.
        Shortcut = RegisterModule("shortcut", new NamedSequential());
        if (inChannels != outChannels)
            Shortcut.Add("conv", new Conv2d(inChannels, outChannels, 1, bias: false, generator: generator))
                .Add("bn", new BatchNorm2d(outChannels));
    }

    /// <summary>The first convolution (kernel k1).</summary>
    public Conv2d Conv1 { get; }

    /// <summary>The BN after conv1.</summary>
    public BatchNorm2d Bn1 { get; }

    /// <summary>The second convolution (kernel k2).</summary>
    public Conv2d Conv2 { get; }

    /// <summary>The BN after conv2.</summary>
    public BatchNorm2d Bn2 { get; }

    /// <summary>The shortcut: empty (identity) or <c>conv</c> 1x1 + <c>bn</c>.</summary>
    public NamedSequential Shortcut { get; }

    /// <summary>The shortcut's 1x1 conv, or null for an identity shortcut.</summary>
    public Conv2d? ShortcutConv => Shortcut["conv"] as Conv2d;

    /// <inheritdoc />
    public override Tensor Forward(Tensor input)
    {
        var y = Bn1.Call(Conv1.Call(input)).Relu();
        y = Bn2.Call(Conv2.Call(y));
        return y.Add(Shortcut.Call(input)).Relu();
    }
}
