namespace NeuralCore.Backends.Cpu;

/// <summary>
/// Decides, call by call of a compiled pass, whether the pass runs its kernels on the worker threads or on the calling
/// thread alone, from the pass's own measured times in each mode. Handing work to another core costs a few
/// microseconds on a quiet machine, and reading data the other core wrote costs little there; on a busy host both cost
/// several times that (on the VM these benchmarks ran on, the pruned model's batch-1 mel pass took 0.27 ms on two
/// threads in such spells against 0.15 ms in quiet ones, and 0.246 ms on one thread in both). The choice is per pass,
/// not per step: a step run on one thread still reads what the step before wrote on both cores, so in a busy spell no
/// single step gains by leaving the workers, and only the whole pass on one core avoids the traffic. The kernels give
/// the same bits on any number of threads, so the choice changes only the time.
/// </summary>
/// <remarks>
/// The first calls run four in one mode, four in the other, twice over; from then on the pass runs in the mode whose
/// smoothed time is lower, and now and then (after 32 calls, doubling each time a trial confirms the choice, up to
/// 1024, and after 32 again once the choice changes) runs a trial of four calls in the other mode to follow changes in
/// the machine. The first call after a change of mode finds the data on the other core and is not counted; a trial's
/// middle sample of its other three replaces that mode's estimate, and each other call moves its mode's estimate an
/// eighth of the way, a sample above twice the estimate (a preempted call) counting as twice the estimate.
/// </remarks>
internal sealed class PassThreading
{
    private const int Block = 4;
    private const int Warmup = 4 * Block;
    private const int FirstTrial = 32;
    private const int MaxTrial = 1024;
    private const double Weight = 0.125;

    private double _threaded = double.NaN, _inline = double.NaN;
    private int _calls, _interval = FirstTrial, _untilTrial = FirstTrial;
    // The call within a running trial (-1: none), and the trial's counted samples.
    private int _trialCall = -1;
    private double _sample0, _sample1, _sample2;
    private bool _previous;

    private bool InlineIsBest => _inline < _threaded;

    /// <summary>Whether this call runs on the calling thread alone.</summary>
    public bool Inline()
    {
        if (_calls < Warmup) return (_calls / Block & 1) == 1;
        return _trialCall >= 0 ? !InlineIsBest : InlineIsBest;
    }

    /// <summary>Records the time (any unit, the same for every call) the call took in the mode <see cref="Inline"/> gave.</summary>
    public void Record(bool inline, double time)
    {
        bool switched = _calls == 0 || inline != _previous;
        _previous = inline;
        int calls = _calls++;
        ref double estimate = ref inline ? ref _inline : ref _threaded;
        if (calls < Warmup)
        {
            if (!switched) estimate = double.IsNaN(estimate) ? time : Blend(estimate, time);
            return;
        }
        if (_trialCall >= 0)
        {
            switch (_trialCall++)
            {
                case 0: break; // the change of mode
                case 1: _sample0 = time; break;
                case 2: _sample1 = time; break;
                default: _sample2 = time; break;
            }
            if (_trialCall < Block) return;
            bool wasBest = InlineIsBest;
            estimate = Math.Max(Math.Min(_sample0, _sample1), Math.Min(Math.Max(_sample0, _sample1), _sample2));
            _trialCall = -1;
            // A trial that confirms the choice waits twice as long for the next; one that changes it, 32 calls.
            _interval = InlineIsBest == wasBest ? Math.Min(2 * _interval, MaxTrial) : FirstTrial;
            _untilTrial = _interval;
            return;
        }
        if (switched) return;
        bool before = InlineIsBest;
        estimate = Blend(estimate, time);
        if (InlineIsBest != before)
        {
            // The machine changed: try the other mode again soon.
            _interval = FirstTrial;
            _untilTrial = FirstTrial;
        }
        else if (--_untilTrial == 0)
        {
            _trialCall = 0;
        }
    }

    private static double Blend(double estimate, double time) => estimate + Weight * (Math.Min(time, 2 * estimate) - estimate);
}
