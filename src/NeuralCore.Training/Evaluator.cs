using System.Globalization;
using NeuralCore.Data;
using NeuralCore.NN;

namespace NeuralCore.Training;

/// <summary>Evaluates a classifier on labelled batches: cross-entropy on logits and a confusion matrix, in eval mode without gradients.</summary>
public static class Evaluator
{
    /// <summary>
    /// The loss, accuracy, macro accuracy, per-class accuracy and confusion matrix of <paramref name="model"/> on
    /// <paramref name="loader"/>; the model's training flag is restored afterwards. When the loader's source is an
    /// <see cref="AscBatchSource"/> (acoustic scenes), the report adds the DCASE figures from <see cref="AscMetrics"/>:
    /// scene names, log loss, and the results per device and per device group.
    /// </summary>
    /// <param name="model">A classifier producing logits [N, classes].</param>
    /// <param name="loader">The labelled batches.</param>
    /// <param name="device">Where the batches go (the model must be there already); the CPU when null.</param>
    /// <exception cref="TrainingException">The model's outputs give a NaN or infinite loss.</exception>
    public static TestReport Test(Module model, DataLoader loader, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(loader);
        var asc = loader.Source as AscBatchSource;
        // Scores in dataset order [N, classes], for the per-device tables.
        float[]? scores = asc is null ? null : new float[(long)asc.Count * asc.NumClasses];
        var (lossSum, confusion) = Run(model, loader, device ?? Device.Cpu, (batch, batches, value) => new TrainingException(
            $"The test loss is {value.ToString(CultureInfo.InvariantCulture)} at batch {batch} of {batches}: the model's outputs are not finite. " +
            "Check the checkpoint (was it saved from a diverged run?) and the input data for NaN or infinite values."), scores);
        var report = TestReport.FromConfusion(confusion, lossSum);
        if (asc is null || confusion.Total != asc.Count) return report;
        var dcase = AscMetrics.Compute(scores, asc.NumClasses, asc.Labels, asc.Devices);
        return report with
        {
            ClassNames = dcase.ClassNames.ToArray(),
            LogLoss = dcase.LogLoss,
            PerDevice = dcase.PerDevice.ToDictionary(p => p.Key, p => TestSubsetReport.From(p.Value)),
            PerDeviceGroup = dcase.PerDeviceGroup.ToDictionary(p => p.Key, p => TestSubsetReport.From(p.Value)),
        };

    }

    /// <summary>
    /// Summed cross-entropy and confusion matrix over <paramref name="loader"/>. A batch whose loss is not finite
    /// throws the exception <paramref name="nonFinite"/>(batch, batches, loss) builds (batch is 1-based).
    /// </summary>
    /// <remarks>When <paramref name="scores"/> is given, each sample's logits are copied to its row (by dataset index) of that [Count, classes] array.</remarks>
    internal static (double LossSum, ConfusionMatrix Confusion) Run(Module model, DataLoader loader, Device device,
        Func<int, int, double, Exception> nonFinite, float[]? scores = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(loader);
        var confusion = new ConfusionMatrix(loader.Source.NumClasses);
        double lossSum = 0;
        bool wasTraining = model.Training;
        model.Eval();
        try
        {
            using var noGrad = Autograd.Autograd.NoGrad();
            int batchIndex = 0;
            foreach (var batch in loader)
            {
                batchIndex++;
                var logits = model.Call(batch.Inputs.To(device));
                double value = Functional.CrossEntropy(logits, batch.Targets.To(device), reduction: Reduction.Sum).Item();
                if (!double.IsFinite(value)) throw nonFinite(batchIndex, loader.BatchCount, value);
                lossSum += value;
                var values = logits.ToArray();
                confusion.AddBatch(values, batch.Targets.ToInt64Array());
                if (scores is not null)
                {
                    int classes = loader.Source.NumClasses;
                    for (int row = 0; row < batch.Indices.Length; row++)
                        values.AsSpan(row * classes, classes).CopyTo(scores.AsSpan(batch.Indices[row] * classes, classes));
                }
            }
        }
        finally
        {
            model.Train(wasTraining);
        }
        return (lossSum, confusion);
    }
}
