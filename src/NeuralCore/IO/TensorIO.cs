using NeuralCore.NN;

namespace NeuralCore.IO;

/// <summary>Conversions between <see cref="Tensor"/> and the file-level <see cref="RawTensor"/>, and tensor-level safetensors/npy I/O.</summary>
public static class TensorIO
{
    /// <summary>The file form of a tensor (copied to the host; Float32 as F32, Int64 as I64, Int32 as I32).</summary>
    public static RawTensor ToRaw(Tensor t) => t.DType switch
    {
        DType.Float32 => RawTensor.FromFloats(t.ToArray(), t.ShapeArray()),
        DType.Int64 => RawTensor.FromInt64(t.ToInt64Array(), t.ShapeArray()),
        _ => RawTensor.FromInt32(t.AsType(DType.Int64).ToInt64Array().Select(v => (int)v).ToArray(), t.ShapeArray()),
    };

    /// <summary>
    /// A CPU tensor from its file form. Integer types become Int64 (Int32 stays Int32); floating types
    /// (F32, F64, F16, BF16) become Float32.
    /// </summary>
    public static Tensor FromRaw(RawTensor raw)
    {
        var shape = raw.ShapeToArray();
        return raw.ElementType switch
        {
            TensorElementType.Float32 or TensorElementType.Float64 or TensorElementType.Float16 or TensorElementType.BFloat16
                => Tensor.FromArray(raw.ToFloats(), shape),
            TensorElementType.Int32 => Tensor.FromArray(raw.ToInt32(), shape),
            _ => Tensor.FromArray(raw.ToInt64(), shape),
        };
    }

    /// <summary>Writes named tensors (a state dict) to a safetensors file atomically, with optional string metadata.</summary>
    public static void SaveSafeTensors(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null) =>
        SafeTensors.Write(path, tensors.Select(kv => new KeyValuePair<string, RawTensor>(kv.Key, ToRaw(kv.Value))), metadata);

    /// <summary>Reads every tensor of a safetensors file (in file order) and its metadata.</summary>
    public static (Dictionary<string, Tensor> Tensors, IReadOnlyDictionary<string, string> Metadata) LoadSafeTensors(string path)
    {
        var file = SafeTensors.Read(path);
        var tensors = new Dictionary<string, Tensor>();
        foreach (var (name, raw) in file) tensors[name] = FromRaw(raw);
        return (tensors, file.Metadata);
    }

    /// <summary>Saves a module's state dict to a safetensors file atomically.</summary>
    public static void Save(this Module module, string path, IReadOnlyDictionary<string, string>? metadata = null) =>
        SaveSafeTensors(path, module.StateDict(), metadata);

    /// <summary>
    /// Loads a safetensors state dict into a module. With <paramref name="adoptShapes"/>, parameters and buffers
    /// take the file's shapes (how a pruned checkpoint loads into a freshly built, unpruned model); otherwise a
    /// shape mismatch is an error naming the key.
    /// </summary>
    public static IReadOnlyDictionary<string, string> Load(this Module module, string path, bool strict = true, bool adoptShapes = false)
    {
        var (tensors, metadata) = LoadSafeTensors(path);
        module.LoadStateDict(tensors, strict, adoptShapes);
        return metadata;
    }

    /// <summary>Writes a tensor to a NumPy .npy file atomically.</summary>
    public static void SaveNpy(string path, Tensor t) => Npy.Write(path, ToRaw(t));

    /// <summary>Reads a NumPy .npy file into a CPU tensor.</summary>
    public static Tensor LoadNpy(string path) => FromRaw(Npy.Read(path));
}
