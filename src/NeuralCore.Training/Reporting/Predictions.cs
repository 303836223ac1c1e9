using NeuralCore.Data;
using NeuralCore.NN;

namespace NeuralCore.Training.Reporting;

/// <summary>The raw outputs of a classifier on a labelled set, in the loader's order (for metrics such as <see cref="AscMetrics"/>).</summary>
public static class Predictions
{
    /// <summary>
    /// Runs <paramref name="model"/> over <paramref name="loader"/> in eval mode without gradients and returns the
    /// logits [N, classes] row-major and the labels [N]. The loader must not shuffle, so that row i is sample i of its
    /// source; the model's training flag is restored afterwards.
    /// </summary>
    /// <exception cref="ArgumentException">The loader shuffles.</exception>
    public static (float[] Logits, int[] Labels) Collect(Module model, DataLoader loader, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(loader);
        if (loader.Shuffle)
            throw new ArgumentException("Predictions.Collect needs a loader without shuffling, so that row i belongs to sample i.", nameof(loader));
        var target = device ?? Device.Cpu;
        var logits = new List<float>(loader.Source.Count * loader.Source.NumClasses);
        var labels = new List<int>(loader.Source.Count);
        bool wasTraining = model.Training;
        model.Eval();
        try
        {
            using var noGrad = Autograd.Autograd.NoGrad();
            foreach (var batch in loader)
            {
                logits.AddRange(model.Call(batch.Inputs.To(target)).ToArray());
                labels.AddRange(batch.Targets.ToInt64Array().Select(v => (int)v));
            }
        }
        finally
        {
            model.Train(wasTraining);
        }
        return (logits.ToArray(), labels.ToArray());
    }
}
