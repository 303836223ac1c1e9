using System.Runtime.ExceptionServices;

namespace NeuralCore.Backends.Cpu;

/// <summary>
/// The worker threads that CPU kernels share. Work is split statically: for the same
/// <see cref="Threads"/> and count, every index runs in the same part, in the same order, so
/// results are bit-identical from run to run.
/// </summary>
/// <remarks>
/// A small pool of persistent background threads serves the calls, which keeps the cost of a call
/// to a microsecond or so while the workers are awake; kernels call this many times per training
/// step, some with tiny work. The caller takes part in its own call: it runs part 0, then any part
/// no worker has claimed yet, so a worker that is slow to start (asleep after a few hundred
/// microseconds without work, when waking it took 50-60 µs here, or its vCPU taken by the host)
/// costs at most the time of running its part on the calling thread. Which thread runs a part
/// varies from call to call; what a part computes does not. Nested calls (from inside a body) and
/// calls that find the pool busy with another caller run inline on the calling thread.
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
    /// indices in increasing order on one thread (a worker, or the caller when it gets there first).
    /// Runs inline when count is 1 or Threads is 1.
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
    /// [0, <paramref name="parts"/>), each part on one thread (the caller's included). <paramref name="state"/> usually points to
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
        private static readonly ManualResetEventSlim Done = CreateDone();

        // The current job; written by the caller under Gate, then published by the write of claim.
        private static delegate*<void*, int, void> jobFn;
        private static void* jobState;
        private static Action<int>? jobAction;
        private static int jobCount;
        private static int jobParts;
        private static ExceptionDispatchInfo? jobError;
        // The job's generation (high 32 bits) and which of its first 32 parts are taken (low 32 bits): a thread claims a
        // part by setting its bit with a compare-exchange of the whole word, so a worker that wakes late never runs a
        // part of a job it did not read (a thread may read a generation and then the next job's fields, being written
        // once that job is over: its claims fail, since every part of a job over is taken, those it does not have
        // included). Parts from 32 on are run by their own workers only.
        private const int Claimable = 32;
        private static long claim;
        // Parts run to the end; Done is set by whichever thread finishes the last one.
        private static int finished;

        [ThreadStatic] private static bool insideJob;
        [ThreadStatic] internal static bool InlineOnly;

        /// <summary>One job's fields as a thread read them after seeing its generation.</summary>
        private readonly struct Job(int generation, delegate*<void*, int, void> fn, void* state, Action<int>? action, int count, int parts)
        {
            public readonly int Generation = generation;
            public readonly delegate*<void*, int, void> Fn = fn;
            public readonly void* State = state;
            public readonly Action<int>? Action = action;
            public readonly int Count = count;
            public readonly int Parts = parts;
        }

        /// <summary>
        /// The event the caller waits on for the workers' parts, with the object it blocks on already made: an event
        /// makes it at its first wait that outlasts the spinning, which would otherwise be whichever call first finds a
        /// worker still busy, long after warm-up (BenchmarkDotNet's memory diagnoser counted it in a plan's inference
        /// calls). A wait of 1 ms on the unset event, once per process, makes it now.
        /// </summary>
        private static ManualResetEventSlim CreateDone()
        {
            var done = new ManualResetEventSlim(false, 1000);
            done.Wait(1);
            return done;
        }

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
                finished = 0;
                Done.Reset();
                // Only the caller, under Gate, publishes jobs: the word holds the last generation.
                int current = unchecked((int)(Volatile.Read(ref claim) >> 32) + 1);
                // Bits of parts the job does not have start set: a thread that read this job's generation with an earlier
                // job's fields (written while it read) cannot take a part that does not exist.
                uint absent = parts >= Claimable ? 0u : ~((1u << parts) - 1);
                Volatile.Write(ref claim, ((long)current << 32) | absent);
                for (int w = 0; w < parts - 1; w++) Workers[w].Wake.Set();

                // Each thread first claims its own part (the caller part 0, worker w part w), so a part runs where the
                // same part of the previous call ran and its data is in that core's caches; then the caller, and any
                // worker done early, claims the parts still untaken: a worker slow to wake (its vCPU idle for a few
                // hundred microseconds, or taken by the host) has its part run by another thread instead of waited for.
                insideJob = true;
                try
                {
                    RunClaimed(new Job(current, fn, state, action, count, parts), 0);
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

        /// <summary>The current job as published (a worker's view; null fields once it is over, then no part is left to claim).</summary>
        private static Job Current()
        {
            int current = (int)(Volatile.Read(ref claim) >> 32);
            return new Job(current, jobFn, jobState, jobAction, jobCount, jobParts);
        }

        /// <summary>Runs part <paramref name="own"/> of <paramref name="job"/> if no thread has taken it, then any part still untaken.</summary>
        private static void RunClaimed(in Job job, int own)
        {
            if (own >= Claimable)
            {
                // Woken for this part alone, which no other thread takes: the job waits for it, so it is still current.
                RunAndCount(job, own);
                return;
            }
            if (own < job.Parts && TryClaim(job.Generation, own)) RunAndCount(job, own);
            int claimable = Math.Min(job.Parts, Claimable);
            for (int part = 0; part < claimable; part++)
                if (TryClaim(job.Generation, part)) RunAndCount(job, part);
        }

        /// <summary>Takes <paramref name="part"/> of the job of <paramref name="generation"/> unless that job is over or the part taken.</summary>
        private static bool TryClaim(int generation, int part)
        {
            long bit = 1L << part;
            while (true)
            {
                long seen = Volatile.Read(ref claim);
                if ((int)(seen >> 32) != generation || (seen & bit) != 0) return false;
                if (Interlocked.CompareExchange(ref claim, seen | bit, seen) == seen) return true;
            }
        }

        private static void RunAndCount(in Job job, int part)
        {
            try
            {
                RunPart(job, part);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref jobError, ExceptionDispatchInfo.Capture(e), null);
            }
            if (Interlocked.Increment(ref finished) == job.Parts) Done.Set();
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

        private static void RunPart(in Job job, int part)
        {
            long count = job.Count;
            int start = (int)(part * count / job.Parts);
            int end = (int)((part + 1) * count / job.Parts);
            if (job.Action is { } action)
            {
                for (int i = start; i < end; i++) action(i);
            }
            else
            {
                for (int i = start; i < end; i++) job.Fn(job.State, i);
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
                    RunClaimed(Current(), part);
                }
            }
        }
    }
}
