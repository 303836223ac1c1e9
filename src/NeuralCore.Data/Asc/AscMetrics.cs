using System.Globalization;
using System.Text;

namespace NeuralCore.Data;

/// <summary>Accuracy figures for a subset of the clips (one device, or a device group).</summary>
/// <param name="Count">Clips in the subset.</param>
/// <param name="Accuracy">Share of the subset classified correctly.</param>
/// <param name="MacroAccuracy">Mean over the classes present in the subset of their accuracy (class-wise accuracy).</param>
/// <param name="LogLoss">Mean multi-class cross-entropy over the subset.</param>
public sealed record AscSubsetResult(int Count, double Accuracy, double MacroAccuracy, double LogLoss);

/// <summary>The DCASE 2023 Task 1 test report of a set of predictions (see <see cref="AscMetrics.Compute"/>).</summary>
/// <param name="Count">Number of clips.</param>
/// <param name="MacroAccuracy">Macro-average class-wise accuracy: the mean of the per-class recalls (the primary DCASE metric).</param>
/// <param name="Accuracy">Share of clips classified correctly.</param>
/// <param name="LogLoss">Mean multi-class cross-entropy of the predicted probabilities.</param>
/// <param name="ClassNames">Name of each class.</param>
/// <param name="ClassCount">Clips per class.</param>
/// <param name="ClassAccuracy">Recall of each class (NaN for a class with no clips).</param>
/// <param name="Confusion">Confusion matrix [true class][predicted class] of clip counts.</param>
/// <param name="PerDevice">Results per device, in <see cref="Tau22.Devices"/> order, then any other devices alphabetically.</param>
/// <param name="PerDeviceGroup">Results for the groups real (a, b, c), seen (s1-s3), unseen (s4-s6) that have clips.</param>
public sealed record AscReport(int Count, double MacroAccuracy, double Accuracy, double LogLoss, IReadOnlyList<string> ClassNames,
    int[] ClassCount, double[] ClassAccuracy, int[][] Confusion, IReadOnlyDictionary<string, AscSubsetResult> PerDevice,
    IReadOnlyDictionary<string, AscSubsetResult> PerDeviceGroup)
{
    /// <summary>A plain-text report: the headline numbers, per-class, per-device and per-group tables, the confusion matrix.</summary>
    public string Format()
    {
        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine(ci, $"clips {Count}  macro accuracy {MacroAccuracy:P2}  accuracy {Accuracy:P2}  log loss {LogLoss:F4}");
        sb.AppendLine();
        int width = Math.Max(8, ClassNames.Max(n => n.Length));
        sb.AppendLine(ci, $"{"class".PadRight(width)}  {"clips",6}  {"accuracy",8}");
        for (int c = 0; c < ClassNames.Count; c++)
            sb.AppendLine(ci, $"{ClassNames[c].PadRight(width)}  {ClassCount[c],6}  {ClassAccuracy[c],8:P1}");
        sb.AppendLine();
        sb.AppendLine(ci, $"{"device",-8}  {"clips",6}  {"accuracy",8}  {"macro",8}  {"log loss",8}");
        foreach (var (name, r) in PerDevice.Concat(PerDeviceGroup))
            sb.AppendLine(ci, $"{name,-8}  {r.Count,6}  {r.Accuracy,8:P1}  {r.MacroAccuracy,8:P1}  {r.LogLoss,8:F4}");
        sb.AppendLine();
        sb.AppendLine("confusion (rows: true class, columns: predicted)");
        for (int c = 0; c < ClassNames.Count; c++)
            sb.AppendLine(ClassNames[c].PadRight(width) + "  " + string.Join(" ", Confusion[c].Select(v => v.ToString(ci).PadLeft(5))));
        return sb.ToString();
    }
}

/// <summary>The DCASE acoustic-scene metrics as a pure function of scores, labels and devices.</summary>
public static class AscMetrics
{
    /// <summary>
    /// Scores <paramref name="scores"/> [N, C] row-major (logits, or probabilities when
    /// <paramref name="scoresAreProbabilities"/>) against <paramref name="labels"/> [N], grouping by
    /// <paramref name="devices"/> [N] (may be null: no device tables).
    /// </summary>
    /// <remarks>
    /// The prediction is the arg-max score (first on ties). Log loss is <c>-mean log p(label)</c>: from logits by a
    /// log-softmax; from probabilities after clipping to [1e-15, 1 - 1e-15] and renormalising each row (scikit-learn's
    /// <c>log_loss</c>, which the DCASE evaluation uses).
    /// </remarks>
    public static AscReport Compute(ReadOnlySpan<float> scores, int numClasses, ReadOnlySpan<int> labels, IReadOnlyList<string>? devices = null,
        bool scoresAreProbabilities = false, IReadOnlyList<string>? classNames = null)
    {
        int n = labels.Length;
        if (numClasses < 1)
            throw new ArgumentOutOfRangeException(nameof(numClasses), numClasses, "There must be at least one class.");
        if (scores.Length != n * numClasses)
            throw new ArgumentException($"Expected {n} x {numClasses} scores for {n} labels, found {scores.Length}.", nameof(scores));
        if (devices is not null && devices.Count != n)
            throw new ArgumentException($"Expected {n} devices, one per label, found {devices.Count}.", nameof(devices));
        classNames ??= numClasses == Tau22.SceneLabels.Count ? Tau22.SceneLabels : Enumerable.Range(0, numClasses).Select(i => i.ToString(CultureInfo.InvariantCulture)).ToArray();
        if (classNames.Count != numClasses)
            throw new ArgumentException($"Expected {numClasses} class names, found {classNames.Count}.", nameof(classNames));

        var predicted = new int[n];
        var loss = new double[n];
        var labelArray = labels.ToArray();
        for (int i = 0; i < n; i++)
        {
            int y = labels[i];
            if ((uint)y >= (uint)numClasses)
                throw new ArgumentOutOfRangeException(nameof(labels), $"Label {y} of clip {i} is outside [0, {numClasses}).");
            var row = scores.Slice(i * numClasses, numClasses);
            int best = 0;
            for (int c = 1; c < numClasses; c++)
                if (row[c] > row[best])
                    best = c;
            predicted[i] = best;
            loss[i] = scoresAreProbabilities ? ProbabilityLoss(row, y) : LogitLoss(row, y);
        }

        var all = Enumerable.Range(0, n).ToArray();
        var overall = Subset(all, labelArray, predicted, loss, numClasses, out var classCount, out var classAccuracy);
        var confusion = new int[numClasses][];
        for (int c = 0; c < numClasses; c++)
            confusion[c] = new int[numClasses];
        for (int i = 0; i < n; i++)
            confusion[labels[i]][predicted[i]]++;

        var perDevice = new Dictionary<string, AscSubsetResult>();
        var perGroup = new Dictionary<string, AscSubsetResult>();
        if (devices is not null)
        {
            var names = devices.Distinct().OrderBy(d => Tau22.Devices.IndexOf(d) is var k && k >= 0 ? k : int.MaxValue).ThenBy(d => d, StringComparer.Ordinal);
            foreach (var d in names)
                perDevice[d] = Subset(all.Where(i => devices[i] == d).ToArray(), labelArray, predicted, loss, numClasses, out _, out _);
            foreach (var (group, members) in Tau22.DeviceGroups)
            {
                var rows = all.Where(i => members.Contains(devices[i])).ToArray();
                if (rows.Length > 0)
                    perGroup[group] = Subset(rows, labelArray, predicted, loss, numClasses, out _, out _);
            }
        }
        return new AscReport(n, overall.MacroAccuracy, overall.Accuracy, overall.LogLoss, classNames, classCount, classAccuracy, confusion, perDevice, perGroup);
    }

    private static int IndexOf(this IReadOnlyList<string> list, string value)
    {
        for (int i = 0; i < list.Count; i++)
            if (list[i] == value)
                return i;
        return -1;
    }

    private static AscSubsetResult Subset(int[] rows, int[] labels, int[] predicted, double[] loss, int numClasses, out int[] classCount, out double[] classAccuracy)
    {
        classCount = new int[numClasses];
        var correct = new int[numClasses];
        double lossSum = 0;
        int hits = 0;
        foreach (int i in rows)
        {
            classCount[labels[i]]++;
            if (predicted[i] == labels[i])
            {
                correct[labels[i]]++;
                hits++;
            }
            lossSum += loss[i];
        }
        classAccuracy = new double[numClasses];
        double macro = 0;
        int present = 0;
        for (int c = 0; c < numClasses; c++)
        {
            classAccuracy[c] = classCount[c] > 0 ? (double)correct[c] / classCount[c] : double.NaN;
            if (classCount[c] > 0)
            {
                macro += classAccuracy[c];
                present++;
            }
        }
        int count = rows.Length;
        return new AscSubsetResult(count, count > 0 ? (double)hits / count : double.NaN, present > 0 ? macro / present : double.NaN, count > 0 ? lossSum / count : double.NaN);
    }

    private static double LogitLoss(ReadOnlySpan<float> logits, int label)
    {
        double max = double.NegativeInfinity;
        foreach (float v in logits)
            max = Math.Max(max, v);
        double sum = 0;
        foreach (float v in logits)
            sum += Math.Exp(v - max);
        return max + Math.Log(sum) - logits[label];
    }

    private static double ProbabilityLoss(ReadOnlySpan<float> probabilities, int label)
    {
        const double eps = 1e-15;
        double sum = 0;
        foreach (float p in probabilities)
            sum += Math.Clamp(p, eps, 1 - eps);
        return -Math.Log(Math.Clamp(probabilities[label], eps, 1 - eps) / sum);
    }
}
