namespace NeuralCore.Optim;

/// <summary>Learning-rate factor functions of the epoch, for <see cref="LambdaLR"/>.</summary>
public static class Schedules
{
    /// <summary>
    /// The seed's <c>exp_warmup_linear_down(warmup, rampdown_length, start_rampdown, last_value)</c>: the product of
    /// an exponential warm-up and a linear ramp-down, factor(e) = rampup(e) * rampdown(e) with
    /// <list type="bullet">
    /// <item>rampup(e) = exp(-5 (1 - clip(e, 0.5, W) / W)^2) for e &lt; W, else 1 (W = <paramref name="warmup"/>;
    /// the clip at 0.5 makes epoch 0 start at exp(-5 (1 - 0.5/W)^2) rather than exp(-5));</item>
    /// <item>rampdown(e) = 1 for e &lt;= start; last + (1 - last) (L - e + start) / L while e - start &lt; L; else last
    /// (L = <paramref name="rampdownLength"/>, start = <paramref name="rampdownStart"/>, last = <paramref name="lastValue"/>).</item>
    /// </list>
    /// With the seed's (6, 10, 20, 0.001): 0.0150 at epoch 0, 0.8703 at 5, 1 from epoch 6 to 20, 0.9001 at 21, 0.001 from 30 on.
    /// </summary>
    public static Func<int, double> ExpWarmupLinearDown(int warmup, int rampdownLength, int rampdownStart, double lastValue)
    {
        if (warmup < 0) throw new ArgumentOutOfRangeException(nameof(warmup), warmup, "The warm-up length must be at least 0 epochs.");
        if (rampdownLength < 1) throw new ArgumentOutOfRangeException(nameof(rampdownLength), rampdownLength, "The ramp-down length must be at least 1 epoch.");
        return epoch => ExpRampup(warmup, epoch) * LinearRampdown(rampdownLength, rampdownStart, lastValue, epoch);
    }

    /// <summary>The seed's <c>exp_rampup(rampup_length)(epoch)</c>.</summary>
    private static double ExpRampup(int length, int epoch)
    {
        if (epoch >= length) return 1.0;
        var e = Math.Clamp(epoch, 0.5, length);
        var phase = 1.0 - e / length;
        return Math.Exp(-5.0 * phase * phase);
    }

    /// <summary>The seed's <c>linear_rampdown(rampdown_length, start, last_value)(epoch)</c>.</summary>
    private static double LinearRampdown(int length, int start, double last, int epoch)
    {
        if (epoch <= start) return 1.0;
        if (epoch - start < length) return last + (1.0 - last) * (length - epoch + start) / length;
        return last;
    }
}
