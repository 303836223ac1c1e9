using NeuralCore.NN;
using NeuralCore.Optim;

namespace NeuralCore.Tests.Optim;

public class SchedulerTests
{
    private static Optimizer NewAdam(double lr = 1e-3, int groups = 1) =>
        new Adam(Enumerable.Range(0, groups).Select(_ => new ParamGroup([new Parameter(Tensor.Zeros([2]))])).ToList(), lr: lr);

    // Computed with the seed's exp_warmup_linear_down(6, 10, 20, 0.001) in Python for epochs 0..35.
    private static readonly double[] SeedFactors =
    [
        0.01497476408708202, 0.031047958479329625, 0.10836802322189582, 0.2865047968601901, 0.5737534207374327,
        0.8703247258333906, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
        0.9001, 0.8002, 0.7003, 0.6003999999999999, 0.5005, 0.4006, 0.30069999999999997, 0.2008, 0.1009,
        0.001, 0.001, 0.001, 0.001, 0.001, 0.001,
    ];

    [Fact]
    public void ExpWarmupLinearDown_MatchesTheSeedForEpochs0To35()
    {
        var f = Schedules.ExpWarmupLinearDown(6, 10, 20, 0.001);
        for (var e = 0; e < SeedFactors.Length; e++) Assert.Equal(SeedFactors[e], f(e), 12);
        // Epoch 0 is clipped to 0.5, not 0: exp(-5 (1 - 0.5/6)^2), not exp(-5).
        Assert.Equal(Math.Exp(-5 * Math.Pow(1 - 0.5 / 6, 2)), f(0), 15);
    }

    [Fact]
    public void LambdaLR_WithTheSeedScheduleSetsLrPerEpoch()
    {
        var opt = NewAdam(1e-3);
        var scheduler = new LambdaLR(opt, Schedules.ExpWarmupLinearDown(6, 10, 20, 0.001));
        Assert.Equal(0, scheduler.LastEpoch);
        Assert.Equal(1e-3, opt.ParamGroups[0]["initial_lr"]);
        for (var e = 0; e < SeedFactors.Length; e++)
        {
            Assert.Equal(1e-3 * SeedFactors[e], opt.ParamGroups[0].Lr, 15);
            Assert.Equal(opt.ParamGroups[0].Lr, scheduler.GetLastLr()[0]);
            scheduler.Step();
        }
        Assert.Equal(SeedFactors.Length, scheduler.LastEpoch);
    }

    [Fact]
    public void LambdaLR_OneFunctionPerGroup()
    {
        var opt = NewAdam(0.1, groups: 2);
        var scheduler = new LambdaLR(opt, [e => 1.0 / (e + 1), e => e]);
        scheduler.Step();
        scheduler.Step();
        Assert.Equal([0.1 / 3, 0.2], scheduler.GetLastLr());
        Assert.Throws<ArgumentException>(() => new LambdaLR(opt, [e => 1.0]));
    }

    [Fact]
    public void CosineAnnealingLR_FollowsTheClosedForm()
    {
        var opt = NewAdam(0.1);
        var scheduler = new CosineAnnealingLR(opt, tMax: 10, etaMin: 0.001);
        var lrs = new List<double>();
        for (var e = 0; e <= 10; e++)
        {
            lrs.Add(opt.ParamGroups[0].Lr);
            scheduler.Step();
        }
        Assert.Equal(0.1, lrs[0], 12);
        Assert.Equal(0.001 + 0.099 * 0.5, lrs[5], 12);
        Assert.Equal(0.001 + 0.099 * (1 + Math.Cos(Math.PI * 3 / 10)) / 2, lrs[3], 12);
        Assert.Equal(0.001, lrs[10], 12);
        Assert.True(lrs.Zip(lrs.Skip(1)).All(p => p.First > p.Second));
    }

    [Fact]
    public void SchedulerStateDict_ResumesTheSchedule()
    {
        var factor = Schedules.ExpWarmupLinearDown(6, 10, 20, 0.001);
        var opt = NewAdam(1e-3);
        var scheduler = new LambdaLR(opt, factor);
        for (var i = 0; i < 4; i++) scheduler.Step();
        var state = scheduler.StateDict();
        Assert.Equal(4.0, state["last_epoch"]);

        var opt2 = NewAdam(1e-3);
        var resumed = new LambdaLR(opt2, factor);
        resumed.LoadStateDict(state);
        Assert.Equal(opt.ParamGroups[0].Lr, opt2.ParamGroups[0].Lr);
        scheduler.Step();
        resumed.Step();
        Assert.Equal(5, resumed.LastEpoch);
        Assert.Equal(opt.ParamGroups[0].Lr, opt2.ParamGroups[0].Lr);
        Assert.Equal(1e-3 * SeedFactors[5], opt2.ParamGroups[0].Lr, 15);
    }

    [Fact]
    public void ReduceLROnPlateau_ReducesAfterPatienceAndWaitsOutTheCooldown()
    {
        var opt = NewAdam(1.0);
        var plateau = new ReduceLROnPlateau(opt, patience: 2, factor: 0.5, cooldown: 1, minLr: 0.2);
        var lrs = new List<double>();
        // 1.0 improves; 0.9999 is within the 1e-4 relative threshold, so it is not an improvement.
        foreach (var loss in new[] { 1.0, 0.9999, 1.0, 1.2, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6 })
        {
            plateau.Step(loss);
            lrs.Add(opt.ParamGroups[0].Lr);
        }
        // Bad epochs at steps 2-4 -> reduce at step 4. Step 5 improves (best 0.5); bad at 6-8 -> reduce at step 8.
        // The cooldown swallows step 9, so steps 10-12 are the next three bad epochs; min_lr caps the reduction at 0.2.
        Assert.Equal([1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.2, 0.2, 0.2], lrs);
        Assert.Equal(0.5, plateau.Best);
    }

    [Fact]
    public void ReduceLROnPlateau_MaxModeAndStateDict()
    {
        var opt = NewAdam(0.1);
        var plateau = new ReduceLROnPlateau(opt, PlateauMode.Max, patience: 0);
        plateau.Step(0.5);
        plateau.Step(0.7);
        Assert.Equal(0.1, opt.ParamGroups[0].Lr, 12);
        plateau.Step(0.6);
        Assert.Equal(0.01, opt.ParamGroups[0].Lr, 12);

        var copy = new ReduceLROnPlateau(opt, PlateauMode.Max, patience: 0);
        copy.LoadStateDict(plateau.StateDict());
        Assert.Equal(0.7, copy.Best);
        Assert.Equal(3, copy.LastEpoch);
        copy.Step(0.71);
        Assert.Equal(0.71, copy.Best);
        Assert.Equal(0.01, opt.ParamGroups[0].Lr, 12);
    }
}
