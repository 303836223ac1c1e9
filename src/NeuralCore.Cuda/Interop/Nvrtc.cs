using System.Runtime.InteropServices;
using System.Text;

namespace NeuralCore.Cuda.Interop;

/// <summary>
/// NVRTC, the CUDA runtime compiler (<c>libnvrtc.so.13/.12/.11.2</c>). Needs no GPU and no driver, which is
/// what lets a CPU-only machine compile every kernel. Failures carry NVRTC's error string and, for a failed
/// compilation, the compiler log.
/// </summary>
internal static unsafe partial class Nvrtc
{
    private const string Lib = "nvrtc";

    static Nvrtc() => NativeLibraries.EnsureRegistered();

    [LibraryImport(Lib)] public static partial int nvrtcVersion(out int major, out int minor);
    [LibraryImport(Lib)] public static partial int nvrtcGetNumSupportedArchs(out int count);
    [LibraryImport(Lib)] public static partial int nvrtcGetSupportedArchs(int* archs);
    [LibraryImport(Lib)]
    public static partial int nvrtcCreateProgram(out nint program, byte* source, byte* name, int numHeaders, byte** headers, byte** includeNames);
    [LibraryImport(Lib)] public static partial int nvrtcDestroyProgram(ref nint program);
    [LibraryImport(Lib)] public static partial int nvrtcCompileProgram(nint program, int numOptions, byte** options);
    [LibraryImport(Lib)] public static partial int nvrtcGetProgramLogSize(nint program, out nuint size);
    [LibraryImport(Lib)] public static partial int nvrtcGetProgramLog(nint program, byte* log);
    [LibraryImport(Lib)] public static partial int nvrtcGetPTXSize(nint program, out nuint size);
    [LibraryImport(Lib)] public static partial int nvrtcGetPTX(nint program, byte* ptx);
    [LibraryImport(Lib)] public static partial int nvrtcGetCUBINSize(nint program, out nuint size);
    [LibraryImport(Lib)] public static partial int nvrtcGetCUBIN(nint program, byte* cubin);
    [LibraryImport(Lib)] public static partial nint nvrtcGetErrorString(int result);

    /// <summary>NVRTC's name for a status, e.g. NVRTC_ERROR_COMPILATION.</summary>
    public static string ErrorString(int result) => Marshal.PtrToStringUTF8(nvrtcGetErrorString(result)) ?? $"nvrtcResult {result}";

    /// <summary>Throws <see cref="CudaException"/> unless <paramref name="result"/> is NVRTC_SUCCESS.</summary>
    public static void Check(int result, string call, string detail = "")
    {
        if (result != 0)
        {
            var name = ErrorString(result);
            throw new CudaException("NVRTC", call, result, name, detail.Length > 0 ? detail : name);
        }
    }

    /// <summary>The NVRTC version as (major, minor).</summary>
    public static (int Major, int Minor) Version()
    {
        Check(nvrtcVersion(out var major, out var minor), "nvrtcVersion");
        return (major, minor);
    }

    /// <summary>The SM architectures this NVRTC can compile for (75 for sm_75, ...).</summary>
    public static int[] SupportedArchs()
    {
        Check(nvrtcGetNumSupportedArchs(out var count), "nvrtcGetNumSupportedArchs");
        var archs = new int[count];
        fixed (int* p = archs) Check(nvrtcGetSupportedArchs(p), "nvrtcGetSupportedArchs");
        return archs;
    }

    /// <summary>The result of one compilation: the image (PTX text or CUBIN, NUL-terminated for PTX) and the compiler log.</summary>
    public readonly record struct Output(byte[] Image, string Log);

    /// <summary>
    /// Compiles <paramref name="source"/> named <paramref name="name"/> with the given headers (name -> text) and options.
    /// <paramref name="cubin"/> selects CUBIN output (needs a real sm_XY architecture) instead of PTX.
    /// </summary>
    /// <exception cref="CudaException">The source does not compile; the message holds the compiler log.</exception>
    public static Output Compile(string source, string name, IReadOnlyDictionary<string, string> headers, IReadOnlyList<string> options, bool cubin)
    {
        using var strings = new Utf8Strings();
        var headerTexts = headers.Values.Select(strings.Add).ToArray();
        var headerNames = headers.Keys.Select(strings.Add).ToArray();
        var opts = options.Select(strings.Add).ToArray();
        nint program;
        fixed (nint* ph = headerTexts, pn = headerNames, po = opts)
        {
            Check(nvrtcCreateProgram(out program, (byte*)strings.Add(source), (byte*)strings.Add(name), headers.Count, (byte**)ph, (byte**)pn),
                "nvrtcCreateProgram");
            try
            {
                var result = nvrtcCompileProgram(program, opts.Length, (byte**)po);
                var log = ProgramLog(program);
                if (result != 0) Check(result, "nvrtcCompileProgram", $"{name} did not compile ({string.Join(' ', options)}):\n{log}");
                return new Output(cubin ? Cubin(program) : Ptx(program), log);
            }
            finally
            {
                nvrtcDestroyProgram(ref program);
            }
        }
    }

    private static string ProgramLog(nint program)
    {
        Check(nvrtcGetProgramLogSize(program, out var size), "nvrtcGetProgramLogSize");
        var buffer = new byte[(int)size];
        fixed (byte* p = buffer) Check(nvrtcGetProgramLog(program, p), "nvrtcGetProgramLog");
        return Encoding.UTF8.GetString(buffer).TrimEnd('\0').Trim();
    }

    private static byte[] Ptx(nint program)
    {
        Check(nvrtcGetPTXSize(program, out var size), "nvrtcGetPTXSize");
        var buffer = new byte[(int)size];
        fixed (byte* p = buffer) Check(nvrtcGetPTX(program, p), "nvrtcGetPTX");
        return buffer;
    }

    private static byte[] Cubin(nint program)
    {
        Check(nvrtcGetCUBINSize(program, out var size), "nvrtcGetCUBINSize");
        var buffer = new byte[(int)size];
        fixed (byte* p = buffer) Check(nvrtcGetCUBIN(program, p), "nvrtcGetCUBIN");
        return buffer;
    }

    /// <summary>NUL-terminated UTF-8 copies of strings in unmanaged memory, freed together.</summary>
    private sealed class Utf8Strings : IDisposable
    {
        private readonly List<nint> _blocks = [];

        public nint Add(string s)
        {
            var bytes = Encoding.UTF8.GetByteCount(s);
            var p = (byte*)NativeMemory.Alloc((nuint)bytes + 1);
            _blocks.Add((nint)p);
            // SAFETY: p holds bytes + 1 bytes; the terminator goes in the last one.
            Encoding.UTF8.GetBytes(s, new Span<byte>(p, bytes));
            p[bytes] = 0;
            return (nint)p;
        }

        public void Dispose()
        {
            foreach (var p in _blocks) NativeMemory.Free((void*)p);
        }
    }
}
