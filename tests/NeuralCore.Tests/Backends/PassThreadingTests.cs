using NeuralCore.Backends.Cpu;

namespace NeuralCore.Tests.Backends;

/// <summary>
/// <see cref="PassThreading"/>'s choices for synthetic pass times: its first calls try both modes, then it keeps the
/// faster one, tries the other in trials of four calls at growing intervals, follows a change in the machine, and is
/// not moved by one preempted call or by the slow first call after each change of mode.
/// </summary>
public sealed class PassThreadingTests
{
    /// <summary>Runs <paramref name="calls"/> calls of a pass whose time in each mode <paramref name="time"/> gives; returns the modes chosen.</summary>
    private static List<bool> Run(PassThreading threading, int calls, Func<bool, int, double> time, int first = 0)
    {
        var modes = new List<bool>();
        bool? previous = null;
        for (int call = first; call < first + calls; call++)
        {
            bool inline = threading.Inline();
            // The first call after a change of mode is slow: its data is on the other core.
            double t = time(inline, call) * (previous is { } p && p != inline ? 3 : 1);
            threading.Record(inline, t);
            modes.Add(inline);
            previous = inline;
        }
        return modes;
    }

    /// <summary>Where each run of threaded calls starts, and how long it is.</summary>
    private static List<(int Start, int Length)> ThreadedRuns(IReadOnlyList<bool> modes)
    {
        var runs = new List<(int, int)>();
        for (int i = 0; i < modes.Count; i++)
        {
            if (modes[i] || (i > 0 && !modes[i - 1])) continue;
            int j = i;
            while (j < modes.Count && !modes[j]) j++;
            runs.Add((i, j - i));
        }
        return runs;
    }

    [Fact]
    public void TriesBothModesThenKeepsTheFasterAndTriesTheOtherEverLessOften()
    {
        var threading = new PassThreading();
        var modes = Run(threading, 16 + 400, (inline, _) => inline ? 5 : 10);
        Assert.Equal([false, false, false, false, true, true, true, true, false, false, false, false, true, true, true, true], modes.Take(16));
        // Then inline, with trials of four threaded calls after 32 calls, then 64 and 128 more (not counting the first
        // call back, which finds its data on the other core).
        Assert.Equal([(32, 4), (32 + 4 + 1 + 64, 4), (32 + 4 + 1 + 64 + 4 + 1 + 128, 4)], ThreadedRuns(modes.Skip(16).ToList()));
    }

    [Fact]
    public void FollowsAChangeInTheMachine()
    {
        var threading = new PassThreading();
        // Threading pays at first; then a busy host makes the traffic between cores dearer and one thread is faster.
        var modes = Run(threading, 2000, (inline, call) => inline ? 8 : call < 1000 ? 5 : 12);
        Assert.True(modes.Skip(100).Take(900).Count(m => m) <= 12, "threaded while it is faster, with three inline trials");
        Assert.True(modes.Skip(1000 + 20).Count(m => !m) <= 24, "inline within 20 calls of the change, with a few threaded trials");
        // And back: within the longest interval between trials, a trial finds the threaded mode fast again.
        var back = Run(threading, 3000, (inline, _) => inline ? 8 : 5, first: 2000);
        Assert.True(back.Skip(1024 + 8).Count(m => m) <= 28, "threaded again once a trial shows it faster");
    }

    [Fact]
    public void OnePreemptedCallDoesNotChangeTheChoice()
    {
        var threading = new PassThreading();
        Run(threading, 20, (inline, _) => inline ? 10 : 6);
        Assert.False(threading.Inline());
        threading.Record(inline: false, 1000);
        Assert.False(threading.Inline());
    }
}
