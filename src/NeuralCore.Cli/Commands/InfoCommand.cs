using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using NeuralCore.NN;
using NeuralCore.Training.Reporting;

namespace NeuralCore.Cli.Commands;

/// <summary><c>neuralcore info</c>: parameters, MACs and the layer table of a model or a checkpoint.</summary>
internal static class InfoCommand
{
    /// <summary>DCASE 2023 Task 1's parameter limit: 128 K parameters (128 kB at INT8; 128,000 here, and no model here lies between that and 131,072).</summary>
    public const long DcaseParameterLimit = 128_000;

    /// <summary>DCASE 2023 Task 1's limit of multiply-accumulates per 1 s clip (the front end not counted).</summary>
    public const long DcaseMacLimit = 30_000_000;

    public static Command Create(CliConsole console)
    {
        var model = CommonOptions.Model();
        var width = CommonOptions.ChannelWidth(forCheckpoint: false);
        var checkpoint = CommonOptions.Checkpoint(required: false);
        var inputShape = new Option<string>("--input-shape", "--input_shape")
        {
            Description = "Shape of one input sample without the batch dimension: channels,height,width (default 1,28,28, or one second of the front end of an " +
                "acoustic-scene checkpoint, e.g. 1,128,100). Any other shape than 1,28,28 is taken as 1 s of audio and checked against the DCASE 2023 limits.",
            DefaultValueFactory = _ => "1,28,28",
            HelpName = "C,H,W",
        };
        var json = CommonOptions.Json();
        var command = new Command("info",
            "Show a model's size: learnable parameters, multiply-accumulates per sample (MACs, counted as torchinfo/NeSsi do) " +
            "and a table of its layers; for a spectrogram input (e.g. --input-shape 1,128,100) also the DCASE 2023 Task 1 check " +
            "(at most 128 K parameters and 30 M MACs per 1 s clip). Give the architecture (--model, --channel-width) or a --checkpoint.")
        {
            model, width, checkpoint, inputShape, json,
        };
        command.SetAction(parse =>
        {
            var (_, widths) = CommonOptions.ReadModel(parse, model, width);
            var path = parse.GetValue(checkpoint);
            var source = path is null ? ModelSource.Build(widths, seed: 0) : ModelSource.Load(path, widths);
            var shape = parse.GetResult(inputShape) is { Implicit: true } && source.Mel is { } mel
                ? [1, mel.NMels, mel.FrameCount(mel.SampleRate)]
                : CommonOptions.ParseShape(parse.GetValue(inputShape)!, "--input-shape");
            if (shape[0] != source.Config.InputChannels)
                throw new CliException(
                    $"--input-shape {string.Join(",", shape)} has {shape[0]} channels but the model takes {source.Config.InputChannels}; pass --input-shape {source.Config.InputChannels},{shape[1]},{shape[2]}.",
                    Program.UsageError);
            ModelSummary summary;
            try
            {
                summary = ModelSummary.Summarize(source.Model, shape);
            }
            catch (ArgumentException e)
            {
                throw new CliException($"The model cannot run on an input of shape {string.Join(",", shape)}: {e.Message} Try a larger --input-shape, e.g. 1,28,28.", Program.UsageError);
            }
            bool asJson = parse.GetValue(json);
            var human = console.Human(asJson);
            // The widths the model has: a pruned checkpoint's config keeps the widths it was pruned from.
            var widthsHad = RunReader.Describe(source.Model, shape).ChannelWidths!;
            human.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"CP-ResNet, channel widths {string.Join(" ", widthsHad)}{(source.Checkpoint is null ? "" : $" ({source.Kind} {source.Checkpoint})")}"));
            human.WriteLine($"input {Tensor.FormatShape(summary.InputShape)} -> output {Tensor.FormatShape(summary.OutputShape)}");
            human.WriteLine(summary.ToTable().TrimEnd());
            bool audio = !shape.SequenceEqual([1, 28, 28]);
            if (audio) human.WriteLine(DcaseLine(summary));
            if (asJson)
            {
                var output = ToJson(source, widthsHad, summary);
                if (audio) output["dcase"] = DcaseJson(summary);
                console.Out.WriteLine(output.ToJsonString(Json.Indented));
            }
            return Program.Success;
        });
        return command;
    }

    /// <summary>The DCASE 2023 Task 1 complexity check of a model summarised on 1 s of input.</summary>
    private static string DcaseLine(ModelSummary summary)
    {
        bool parametersOk = summary.TotalParameters <= DcaseParameterLimit, macsOk = summary.TotalMacs <= DcaseMacLimit;
        return string.Create(CultureInfo.InvariantCulture,
            $"DCASE 2023 Task 1 limits (input taken as 1 s of audio; front end not counted): parameters {summary.TotalParameters:N0} / {DcaseParameterLimit:N0} " +
            $"({(double)summary.TotalParameters / DcaseParameterLimit:P1}) {(parametersOk ? "PASS" : "FAIL")}, MACs {summary.TotalMacs:N0} / {DcaseMacLimit:N0} " +
            $"({(double)summary.TotalMacs / DcaseMacLimit:P1}) {(macsOk ? "PASS" : "FAIL")} -> {(parametersOk && macsOk ? "within the limits" : "OVER THE LIMITS")}");
    }

    private static JsonObject DcaseJson(ModelSummary summary) => new()
    {
        ["parameter_limit"] = DcaseParameterLimit,
        ["mac_limit"] = DcaseMacLimit,
        ["parameters_ok"] = summary.TotalParameters <= DcaseParameterLimit,
        ["macs_ok"] = summary.TotalMacs <= DcaseMacLimit,
        ["passes"] = summary.TotalParameters <= DcaseParameterLimit && summary.TotalMacs <= DcaseMacLimit,
    };

    private static JsonObject ToJson(ModelSource source, int[] widths, ModelSummary summary)
    {
        var config = new JsonObject();
        foreach (var (key, value) in source.Config.ToMetadata()) config[key] = value;
        var layers = new JsonArray();
        foreach (var layer in summary.Layers)
        {
            layers.Add(new JsonObject
            {
                ["name"] = layer.Name,
                ["type"] = layer.Type,
                ["depth"] = layer.Depth,
                ["output_shape"] = layer.OutputShape is null ? null : Json.Array(layer.OutputShape),
                ["parameters"] = layer.Parameters,
                ["macs"] = layer.Macs,
                ["conv_macs"] = layer.ConvMacs,
            });
        }
        return new JsonObject
        {
            ["model"] = "cpresnet",
            ["channel_widths"] = Json.Array(widths),
            ["config"] = config,
            ["checkpoint"] = source.Checkpoint is null ? null : Path.GetFullPath(source.Checkpoint),
            ["input_shape"] = Json.Array(summary.InputShape),
            ["output_shape"] = Json.Array(summary.OutputShape),
            ["parameters"] = summary.TotalParameters,
            ["macs"] = summary.TotalMacs,
            ["conv_macs"] = summary.ConvMacs,
            ["layers"] = layers,
        };
    }
}
