using System.Runtime.InteropServices;
using System.Text;
using NeuralCore.Backends;

namespace NeuralCore.Cuda.Tests;

/// <summary>Every kernels/*.cu file compiles with NVRTC, without a GPU, and defines every kernel the backend launches.</summary>
public class KernelCompilationTests
{
    public static readonly TheoryData<string, int> FilesAndArchitectures = Cases();

    private static TheoryData<string, int> Cases()
    {
        var data = new TheoryData<string, int>();
        foreach (var file in CudaKernels.Files)
            foreach (var cc in new[] { 75, 80, 90 })
                data.Add(file, cc);
        return data;
    }

    [Fact]
    public void EveryOpFamilyHasASourceFile()
    {
        Assert.Equal(["batchnorm.cu", "copy.cu", "elementwise.cu", "im2col.cu", "indexing.cu", "optimizers.cu", "pooling.cu", "reductions.cu", "softmax_loss.cu"],
            CudaKernels.Files);
        Assert.Contains("struct Layout", CudaKernels.Source("common.cuh"));
    }

    [Theory]
    [MemberData(nameof(FilesAndArchitectures))]
    public void CompilesWithoutWarnings(string file, int cc)
    {
        Requirements.Nvrtc();
        var result = CudaKernels.CompileOne(file, cc);
        Assert.SkipWhen(result.Skipped, result.Message);
        Assert.True(result.Succeeded, result.Message);
        Assert.DoesNotContain("warning", result.Message, StringComparison.OrdinalIgnoreCase);
        Assert.NotEmpty(result.Entries);
    }

    [Fact]
    public void ABrokenSourceFailsWithTheCompilerLog()
    {
        Requirements.Nvrtc();
        var e = Assert.Throws<CudaException>(() => Interop.Nvrtc.Compile("extern \"C\" __global__ void k() { undefined_name = 1; }", "broken.cu",
            new Dictionary<string, string>(), ["--gpu-architecture=compute_75"], cubin: false));
        Assert.Equal("NVRTC", e.Library);
        Assert.Equal("NVRTC_ERROR_COMPILATION", e.ErrorName);
        Assert.Contains("undefined_name", e.Message);
        Assert.Contains("broken.cu", e.Message);
    }

    /// <summary>Every kernel name the backend derives from an op enum, and the fixed ones it uses, is an entry point.</summary>
    [Fact]
    public void EveryKernelTheBackendLaunchesExists()
    {
        Requirements.Nvrtc();
        var entries = CudaKernels.Files.ToDictionary(f => f, f => CudaKernels.PtxEntries(CudaKernels.Compile(f, "compute_75").Image).ToHashSet());
        var expected = new List<(string File, string Kernel)>();
        string[] dtypes = ["f32", "i64", "i32"];
        foreach (var op in Enum.GetValues<UnaryOp>())
        {
            expected.Add(("elementwise.cu", $"unary_{CudaBackend.KernelName(op)}"));
            expected.Add(("elementwise.cu", $"unary_backward_{CudaBackend.KernelName(op)}"));
        }
        foreach (var op in Enum.GetValues<BinaryOp>())
            foreach (var d in dtypes)
            {
                expected.Add(("elementwise.cu", $"binary_{CudaBackend.KernelName(op)}_{d}"));
                expected.Add(("elementwise.cu", $"binary_{CudaBackend.KernelName(op)}_{d}_strided"));
            }
        foreach (var op in Enum.GetValues<ReduceOp>())
        {
            expected.Add(("reductions.cu", $"reduce_{CudaBackend.KernelName(op)}_f32"));
            expected.Add(("reductions.cu", $"reduce_{CudaBackend.KernelName(op)}_f32_rows"));
        }
        foreach (var s in dtypes)
        {
            expected.Add(("copy.cu", $"fill_{s}"));
            expected.Add(("indexing.cu", $"index_select_{s}"));
            foreach (var d in dtypes)
            {
                expected.Add(("copy.cu", $"copy_{s}_to_{d}"));
                expected.Add(("copy.cu", $"copy_{s}_to_{d}_strided"));
            }
        }
        expected.AddRange([
            ("elementwise.cu", "add_scaled_f32"), ("elementwise.cu", "add_channel_bias_f32"),
            ("indexing.cu", "index_add_f32"),
            ("softmax_loss.cu", "softmax_forward_f32"), ("softmax_loss.cu", "softmax_backward_f32"),
            ("softmax_loss.cu", "nll_loss_f32"), ("softmax_loss.cu", "nll_loss_backward_f32"),
            ("optimizers.cu", "adam_step_f32"), ("optimizers.cu", "sgd_step_f32"),
            ("im2col.cu", "im2col_f32"), ("im2col.cu", "col2im_f32"),
            ("pooling.cu", "max_pool2d_forward_f32"), ("pooling.cu", "max_pool2d_backward_f32"),
            ("pooling.cu", "avg_pool2d_forward_f32"), ("pooling.cu", "avg_pool2d_backward_f32"),
            ("batchnorm.cu", "batch_norm_stats_f32"), ("batchnorm.cu", "batch_norm_apply_f32"), ("batchnorm.cu", "batch_norm_inference_f32"),
            ("batchnorm.cu", "batch_norm_backward_reduce_f32"), ("batchnorm.cu", "batch_norm_backward_apply_f32"),
        ]);
        var missing = expected.Where(e => !entries[e.File].Contains(e.Kernel)).Select(e => $"{e.File}:{e.Kernel}").ToList();
        Assert.True(missing.Count == 0, "Missing kernels: " + string.Join(", ", missing));
    }

    [Theory]
    [InlineData(UnaryOp.Relu6, "relu6")]
    [InlineData(UnaryOp.Hardswish, "hardswish")]
    [InlineData(BinaryOp.Maximum, "maximum")]
    [InlineData(ReduceOp.Mean, "mean")]
    public void KernelNamesAreSnakeCaseEnumNames(object op, string expected) => Assert.Equal(expected, CudaBackend.KernelName((Enum)op));

    [Fact]
    public void StructsPassedByValueMatchTheKernelLayouts()
    {
        // common.cuh Layout: int rank + int[8] + int[8]; pooling.cu PoolGeom: 12 ints; im2col.cu ConvGeom: 14 ints.
        Assert.Equal(68, Marshal.SizeOf<CudaLayout>());
        Assert.Equal(12 * 4, Marshal.SizeOf(typeof(CudaBackend).GetNestedType("PoolGeom", System.Reflection.BindingFlags.NonPublic)!));
        Assert.Equal(14 * 4, Marshal.SizeOf(typeof(CudaBackend).GetNestedType("ConvGeom", System.Reflection.BindingFlags.NonPublic)!));
    }

    [Fact]
    public void DeviceImagesAreCachedByArchitectureAndNvrtcVersion()
    {
        Requirements.Nvrtc();
        var dir = Path.Combine(Path.GetTempPath(), $"nc-kernels-{Guid.NewGuid():N}");
        try
        {
            // sm_80: a CUBIN (ELF) for the exact architecture, written to the cache.
            var cubin = CudaKernels.Image("optimizers.cu", 80, dir);
            Assert.Equal([0x7f, (byte)'E', (byte)'L', (byte)'F'], cubin[..4]);
            var file = Assert.Single(Directory.GetFiles(dir));
            Assert.Matches(@"optimizers-sm_80-nvrtc\d+\.\d+-[0-9a-f]{16}\.cubin$", file);
            // A second request reads the cache: replace the file's content and see it come back.
            File.WriteAllBytes(file, [1, 2, 3]);
            Assert.Equal([1, 2, 3], CudaKernels.Image("optimizers.cu", 80, dir));
            // An architecture newer than this NVRTC knows falls back to PTX for the newest older one it supports.
            var newest = CudaKernels.SupportedArchitectures().Max();
            var ptx = Encoding.UTF8.GetString(CudaKernels.Image("optimizers.cu", newest + 1, dir));
            Assert.Contains($".target sm_{newest}", ptx);
            Assert.Contains(".entry adam_step_f32", ptx);
            Assert.NotEqual(CudaKernels.CacheFileName("copy.cu", "sm_80"), CudaKernels.CacheFileName("copy.cu", "sm_90"));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }
}
