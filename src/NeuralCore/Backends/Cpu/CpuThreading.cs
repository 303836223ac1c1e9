using System.Runtime.ExceptionServices;

namespace NeuralCore.Backends.Cpu;

/// <summary>
/// The worker threads that CPU kernels share. Work is split statically: for the same
/// <see cref="Threads"/> and count, every index runs in the same part, in the same order, so
/// results are bit-identical from run to run.
/// </summary>
/// <remarks>
/// A small pool of persistent background threads serves the calls (the caller runs the first
/// part itself), which keeps the cost of a call to a few microseconds; kernels call this many
/// times per training step, some with tiny work. Nested calls (from inside a body) and calls that
/// find the pool busy with another caller run inline on the calling thread.
/// </remarks>
public static class CpuThreading
{
    private static int threads = InitialThreads();

    /// <summary>
    /// Number of threads CPU kernels use (at least 1). Defaults to the environment variable
    /// <c>NEURALCORE_THREADS</c> when it holds a positive integer, else <see cref="Environment.ProcessorCount"/>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is below 1.</exception>
    public static int Threads
    {
        get => Volatile.Read(ref threads);
        set
        {
            if (value < 1)
            {
                throw new ArgumentOutOfRangeException(nameof(value), value,
                    $"CpuThreading.Threads must be at least 1, but {value} was given; use 1 to run CPU kernels on the calling thread only.");
            }
            Volatile.Write(ref threads, value);
        }
    }

    /// <summary>
    /// Runs <paramref name="body"/>(i) for every i in [0, <paramref name="count"/>). The range is cut
    /// into min(<see cref="Threads"/>, count) contiguous parts of near-equal size; part p runs its
    /// indices in increasing order on one thread. Runs inline when count is 1 or Threads is 1.
    /// Returns after every index has run; the first exception thrown by a body is rethrown here.
    /// </summary>
    /// <param name="count">Number of indices (0 does nothing).</param>
    /// <param name="body">Work for one index; must be safe to run concurrently for different indices.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> is negative.</exception>
    public static unsafe void For(int count, Action<int> body)
    {
        ArgumentNullException.ThrowIfNull(body);
        if (count < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(count), count,
                $"CpuThreading.For needs a count of at least 0, but {count} was given.");
        }
        if (count == 0) return;
        Pool.Run(count, Math.Min(Threads, count), null, null, body);
    }

    /// <summary>
    /// Allocation-free form for kernels: runs <paramref name="body"/>(state, part) for every part in
    /// [0, <paramref name="parts"/>), one part per thread. <paramref name="state"/> usually points to
    /// a struct on the caller's stack, which stays valid because this returns only when all parts are done.
    /// </summary>
    internal static unsafe void ForParts(int parts, delegate*<void*, int, void> body, void* state)
    {
        if (parts <= 0) return;
        Pool.Run(parts, parts, body, state, null);
    }

    /// <summary>
    /// While set on a thread, every call from that thread runs its parts inline, one after another (the partition, and
    /// so the results, stay those of <see cref="Threads"/>): for passes too small to repay waking the workers.
    /// </summary>
    internal static bool Inline
    {
        get => Pool.InlineOnly;
        set => Pool.InlineOnly = value;
    }

    private static int InitialThreads()
    {
        string? env = Environment.GetEnvironmentVariable("NEURALCORE_THREADS");
        if (int.TryParse(env, out int n) && n >= 1) return n;
        return Math.Max(1, Environment.ProcessorCount);
    }

    /// <summary>The persistent workers and the one job they share at a time.</summary>
    private static unsafe class Pool
    {
        private static readonly object Gate = new();
        private static readonly List<Worker> Workers = new();
        private static readonly ManualResetEventSlim Done = new(false, 1000);

        // The current job; written by the caller under Gate before workers are woken.
        private static delegate*<void*, int, void> jobFn;
        private static void* jobState;
        private static Action<int>? jobAction;
        private static int jobCount;
        private static int jobParts;
        private static int pending;
        private static ExceptionDispatchInfo? jobError;

        [ThreadStatic] private static bool insideJob;
        [ThreadStatic] internal static bool InlineOnly;

        public static void Run(int count, int parts, delegate*<void*, int, void> fn, void* state, Action<int>? action)
        {
            if (parts <= 1 || insideJob || InlineOnly || !Monitor.TryEnter(Gate))
            {
                RunInline(count, fn, state, action);
                return;
            }
            try
            {
                while (Workers.Count < parts - 1) Workers.Add(new Worker(Workers.Count + 1));
                jobFn = fn;
                jobState = state;
                jobAction = action;
                jobCount = count;
                jobParts = parts;
                jobError = null;
                Volatile.Write(ref pending, parts - 1);
                Done.Reset();
                for (int w = 0; w < parts - 1; w++) Workers[w].Wake.Set();

                insideJob = true;
                try
                {
                    RunPart(0);
                }
                finally
                {
                    insideJob = false;
                    Done.Wait();
                    jobAction = null;
                    jobState = null;
                }
                jobError?.Throw();
            }
            finally
            {
                Monitor.Exit(Gate);
            }
        }

        private static void RunInline(int count, delegate*<void*, int, void> fn, void* state, Action<int>? action)
        {
            bool outer = insideJob;
            insideJob = true;
            try
            {
                for (int i = 0; i < count; i++)
                {
                    if (action != null) action(i);
                    else fn(state, i);
                }
            }
            finally
            {
                insideJob = outer;
            }
        }

        private static void RunPart(int part)
        {
            long count = jobCount;
            int start = (int)(part * count / jobParts);
            int end = (int)((part + 1) * count / jobParts);
            Action<int>? action = jobAction;
            if (action != null)
            {
                for (int i = start; i < end; i++) action(i);
            }
            else
            {
                delegate*<void*, int, void> fn = jobFn;
                void* state = jobState;
                for (int i = start; i < end; i++) fn(state, i);
            }
        }

        private sealed class Worker
        {
            public readonly ManualResetEventSlim Wake = new(false, 1000);
            private readonly int part;

            public Worker(int part)
            {
                this.part = part;
                var thread = new Thread(Loop)
                {
                    IsBackground = true,
                    Name = $"NeuralCore CPU worker {part}",
                };
                thread.Start();
            }

            private void Loop()
            {
                insideJob = true;
                while (true)
                {
                    Wake.Wait();
                    Wake.Reset();
                    try
                    {
                        RunPart(part);
                    }
                    catch (Exception e)
                    {
                        Interlocked.CompareExchange(ref jobError, ExceptionDispatchInfo.Capture(e), null);
                    }
                    if (Interlocked.Decrement(ref pending) == 0) Done.Set();
                }
            }
        }
    }
}
