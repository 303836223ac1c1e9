using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using NeuralCore.NN;

namespace NeuralCore.Cli.Commands;

/// <summary><c>neuralcore info</c>: parameters, MACs and the layer table of a model or a checkpoint.</summary>
internal static class InfoCommand
{
    public static Command Create(CliConsole console)
    {
        var model = CommonOptions.Model();
        var width = CommonOptions.ChannelWidth(forCheckpoint: false);
        var checkpoint = CommonOptions.Checkpoint(required: false);
        var inputShape = new Option<string>("--input-shape", "--input_shape")
        {
            Description = "Shape of one input sample without the batch dimension: channels,height,width.",
            DefaultValueFactory = _ => "1,28,28",
            HelpName = "C,H,W",
        };
        var json = CommonOptions.Json();
        var command = new Command("info",
            "Show a model's size: learnable parameters, multiply-accumulates per sample (MACs, counted as torchinfo/NeSsi do) " +
            "and a table of its layers. Give the architecture (--model, --channel-width) or a --checkpoint.")
        {
            model, width, checkpoint, inputShape, json,
        };
        command.SetAction(parse =>
        {
            var (_, widths) = CommonOptions.ReadModel(parse, model, width);
            var shape = CommonOptions.ParseShape(parse.GetValue(inputShape)!, "--input-shape");
            var path = parse.GetValue(checkpoint);
            var source = path is null ? ModelSource.Build(widths, seed: 0) : ModelSource.Load(path, widths);
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
            human.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"CP-ResNet, channel widths {string.Join(" ", source.Config.ChannelWidths)}{(source.Checkpoint is null ? "" : $" ({source.Kind} {source.Checkpoint})")}"));
            human.WriteLine($"input {Tensor.FormatShape(summary.InputShape)} -> output {Tensor.FormatShape(summary.OutputShape)}");
            human.WriteLine(summary.ToTable().TrimEnd());
            if (asJson) console.Out.WriteLine(ToJson(source, summary).ToJsonString(Json.Indented));
            return Program.Success;
        });
        return command;
    }

    private static JsonObject ToJson(ModelSource source, ModelSummary summary)
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
            ["channel_widths"] = Json.Array(source.Config.ChannelWidths),
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
