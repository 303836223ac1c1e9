using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using NeuralCore.IO;
using NeuralCore.Optim;

namespace NeuralCore.Training;

/// <summary>
/// Everything needed to continue a run exactly where it stopped, in one safetensors file (<c>last.ckpt</c>) written
/// atomically: the model's state dict (tensors <c>model.{key}</c>), the optimizer's state (tensors
/// <c>optimizer.{key}</c> and its scalars), the scheduler's state, the default generator's state, the finished
/// epochs' metrics, the best validation loss so far, and the options that decide the weights.
/// </summary>
/// <remarks>
/// The metadata keys of the trainer start with <c>training.</c>; the model's architecture keys (for CP-ResNet
/// <c>model</c> and <c>cpresnet.*</c>) are stored unprefixed, as in <c>best.safetensors</c>, so
/// <c>CpResNet.LoadCheckpoint</c> reads the model from this file as well (it strips the <c>model.</c> prefix).
/// </remarks>
public sealed class TrainingCheckpoint
{
    /// <summary>The value of the <c>training.format</c> metadata key that marks a trainer checkpoint.</summary>
    public const string FormatName = "neuralcore-training-checkpoint-v1";

    private const string FormatKey = "training.format";
    private const string ModelPrefix = "model.";
    private const string OptimizerPrefix = "optimizer.";

    /// <summary>The number of finished epochs (the epoch these weights are the result of).</summary>
    public required int Epoch { get; init; }

    /// <summary>The lowest validation loss so far.</summary>
    public required double BestValidationLoss { get; init; }

    /// <summary>The epoch that reached <see cref="BestValidationLoss"/>.</summary>
    public required int BestEpoch { get; init; }

    /// <summary>The model's state dict.</summary>
    public required IReadOnlyDictionary<string, Tensor> Model { get; init; }

    /// <summary>The optimizer's state dict.</summary>
    public required OptimizerStateDict Optimizer { get; init; }

    /// <summary>The learning-rate scheduler's state dict.</summary>
    public required IReadOnlyDictionary<string, double> Scheduler { get; init; }

    /// <summary>The state of <see cref="Generator.Default"/> (used by ops that are given no generator).</summary>
    public required ulong[] DefaultGenerator { get; init; }

    /// <summary>The metrics of epochs 1 .. <see cref="Epoch"/>.</summary>
    public required IReadOnlyList<EpochMetrics> History { get; init; }

    /// <summary>The run's options that decide the weights (see <see cref="TrainerOptions"/>), as JSON text.</summary>
    public required string Options { get; init; }

    /// <summary>The model's architecture metadata.</summary>
    public required IReadOnlyDictionary<string, string> ModelMetadata { get; init; }

    /// <summary>The CPU thread count the run used (bit-identical results need the same count).</summary>
    public required int Threads { get; init; }

    /// <summary>True when <paramref name="metadata"/> is that of a file written by <see cref="Save"/>.</summary>
    public static bool IsTrainingCheckpoint(IReadOnlyDictionary<string, string> metadata) =>
        metadata.TryGetValue(FormatKey, out var format) && format == FormatName;

    /// <summary>Writes the checkpoint to <paramref name="path"/> atomically: a failure leaves the previous file as it was.</summary>
    public void Save(string path)
    {
        var metadata = new Dictionary<string, string>(ModelMetadata)
        {
            [FormatKey] = FormatName,
            ["training.epoch"] = Epoch.ToString(CultureInfo.InvariantCulture),
            ["training.best_val_loss"] = BestValidationLoss.ToString("R", CultureInfo.InvariantCulture),
            ["training.best_epoch"] = BestEpoch.ToString(CultureInfo.InvariantCulture),
            ["training.optimizer"] = JsonSerializer.Serialize(Optimizer.Scalars),
            ["training.scheduler"] = JsonSerializer.Serialize(Scheduler),
            ["training.default_generator"] = JsonSerializer.Serialize(DefaultGenerator),
            ["training.history"] = JsonSerializer.Serialize(History),
            ["training.options"] = Options,
            ["training.threads"] = Threads.ToString(CultureInfo.InvariantCulture),
        };
        TensorIO.SaveSafeTensors(path, Tensors(), metadata);
    }

    private IEnumerable<KeyValuePair<string, Tensor>> Tensors()
    {
        foreach (var (key, tensor) in Model) yield return new(ModelPrefix + key, tensor);
        foreach (var (key, tensor) in Optimizer.Tensors) yield return new(OptimizerPrefix + key, tensor);
    }

    /// <summary>Reads a checkpoint written by <see cref="Save"/>.</summary>
    /// <exception cref="InvalidDataException">The file is not a trainer checkpoint or a field is damaged; the message names the file.</exception>
    public static TrainingCheckpoint Load(string path)
    {
        var (tensors, metadata) = TensorIO.LoadSafeTensors(path);
        if (!IsTrainingCheckpoint(metadata))
            throw new InvalidDataException(
                $"'{path}' is not a training checkpoint (its metadata has no '{FormatKey}' = '{FormatName}'), so the run cannot be resumed from it. " +
                "Put the run's own last.ckpt back, or delete the run folder and start the run again without --resume.");
        try
        {
            var model = new Dictionary<string, Tensor>();
            var optimizer = new OptimizerStateDict();
            foreach (var (key, tensor) in tensors)
            {
                if (key.StartsWith(ModelPrefix, StringComparison.Ordinal)) model[key[ModelPrefix.Length..]] = tensor;
                else if (key.StartsWith(OptimizerPrefix, StringComparison.Ordinal)) optimizer.Tensors[key[OptimizerPrefix.Length..]] = tensor;
                else throw new InvalidDataException($"unexpected tensor '{key}'");
            }
            foreach (var (key, value) in Parse<Dictionary<string, double>>(metadata, "training.optimizer")) optimizer.Scalars[key] = value;
            // Checked here rather than when a resume compares the options, so a damaged value gets this method's message.
            if (Parse<JsonNode>(metadata, "training.options") is not JsonObject)
                throw new FormatException("metadata key 'training.options' does not hold a JSON object");
            return new TrainingCheckpoint
            {
                Epoch = Number<int>(metadata, "training.epoch"),
                BestValidationLoss = Number<double>(metadata, "training.best_val_loss"),
                BestEpoch = Number<int>(metadata, "training.best_epoch"),
                Model = model,
                Optimizer = optimizer,
                Scheduler = Parse<Dictionary<string, double>>(metadata, "training.scheduler"),
                DefaultGenerator = Parse<ulong[]>(metadata, "training.default_generator"),
                History = Parse<List<EpochMetrics>>(metadata, "training.history"),
                Options = Get(metadata, "training.options"),
                ModelMetadata = metadata.Where(p => !p.Key.StartsWith("training.", StringComparison.Ordinal)).ToDictionary(p => p.Key, p => p.Value),
                Threads = Number<int>(metadata, "training.threads"),
            };
        }
        catch (Exception e) when (e is FormatException or JsonException or KeyNotFoundException or InvalidDataException or OverflowException)
        {
            throw new InvalidDataException(
                $"'{path}' is a damaged training checkpoint: {e.Message}. Delete the run folder and start the run again without --resume " +
                "(or resume from a backup copy of the run folder).", e);
        }
    }

    private static string Get(IReadOnlyDictionary<string, string> metadata, string key) =>
        metadata.TryGetValue(key, out var value) ? value : throw new KeyNotFoundException($"metadata key '{key}' is missing");

    private static T Number<T>(IReadOnlyDictionary<string, string> metadata, string key) where T : IParsable<T> =>
        T.TryParse(Get(metadata, key), CultureInfo.InvariantCulture, out var value) ? value
            : throw new FormatException($"metadata key '{key}' holds '{metadata[key]}', which is not a valid {typeof(T).Name}");

    private static T Parse<T>(IReadOnlyDictionary<string, string> metadata, string key)
    {
        try
        {
            return JsonSerializer.Deserialize<T>(Get(metadata, key)) ?? throw new FormatException($"metadata key '{key}' holds null");
        }
        catch (JsonException e)
        {
            throw new FormatException($"metadata key '{key}' cannot be read ({e.Message})", e);
        }
    }

    /// <summary>The options JSON as an object (for comparing a resumed run's options).</summary>
    internal JsonObject OptionsJson() => JsonNode.Parse(Options) as JsonObject
        ?? throw new InvalidDataException("The checkpoint's 'training.options' is not a JSON object.");
}
