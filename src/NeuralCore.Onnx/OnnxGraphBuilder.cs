using System.Runtime.InteropServices;
using Google.Protobuf;
using NeuralCore.Onnx.Proto;

namespace NeuralCore.Onnx;

/// <summary>ONNX element type codes (the ONNX <c>TensorProto.DataType</c> values NeuralCore writes).</summary>
internal static class OnnxDataType
{
    public const int Float = 1;
    public const int Int32 = 6;
    public const int Int64 = 7;

    /// <summary>Bytes per element of the dense types the checker knows; 0 for any other.</summary>
    public static int ElementSize(int dataType) => dataType switch
    {
        2 or 3 or 9 => 1,          // UINT8, INT8, BOOL
        4 or 5 or 10 or 16 => 2,   // UINT16, INT16, FLOAT16, BFLOAT16
        Float or Int32 or 12 => 4, // FLOAT, INT32, UINT32
        Int64 or 11 or 13 => 8,    // INT64, DOUBLE, UINT64
        _ => 0,
    };
}

/// <summary>
/// Writes one ONNX graph: unique node and value names, initializers (state tensors and constants), nodes with
/// attributes, and value_info shapes with an optional symbolic batch axis.
/// </summary>
internal sealed class OnnxGraphBuilder(string batchDimName, bool dynamicBatch)
{
    private readonly HashSet<string> _valueNames = [];
    private readonly HashSet<string> _nodeNames = [];
    private readonly Dictionary<(int Type, string Bits), string> _constants = [];

    public GraphProto Graph { get; } = new();

    /// <summary>Reserves <paramref name="name"/> as a value name; false when it is taken.</summary>
    public bool TryReserveValue(string name) => _valueNames.Add(name);

    /// <summary><paramref name="baseName"/> or the first free <c>baseName_k</c>.</summary>
    private static string Unique(HashSet<string> taken, string baseName)
    {
        var name = baseName;
        for (var k = 1; !taken.Add(name); k++) name = $"{baseName}_{k}";
        return name;
    }

    public string UniqueValueName(string baseName) => Unique(_valueNames, baseName);

    /// <summary>A float initializer from row-major values; <paramref name="name"/> must already be reserved.</summary>
    public string AddInitializer(string name, ReadOnlySpan<int> shape, ReadOnlySpan<float> values) =>
        AddTensor(name, OnnxDataType.Float, shape, MemoryMarshal.AsBytes(values));

    /// <summary>A 64-bit integer initializer; <paramref name="name"/> must already be reserved.</summary>
    public string AddInitializer(string name, ReadOnlySpan<int> shape, ReadOnlySpan<long> values) =>
        AddTensor(name, OnnxDataType.Int64, shape, MemoryMarshal.AsBytes(values));

    private string AddTensor(string name, int dataType, ReadOnlySpan<int> shape, ReadOnlySpan<byte> data)
    {
        var t = new TensorProto { Name = name, DataType = dataType };
        foreach (var d in shape) t.Dims.Add(d);
        // NOTE: raw_data is little-endian by the ONNX spec, as is every platform .NET runs NeuralCore on.
        t.RawData = ByteString.CopyFrom(data);
        Graph.Initializer.Add(t);
        return name;
    }

    /// <summary>A scalar float constant (shared between nodes that use the same value).</summary>
    public string FloatScalar(float value)
    {
        var key = (OnnxDataType.Float, BitConverter.SingleToInt32Bits(value).ToString(System.Globalization.CultureInfo.InvariantCulture));
        if (_constants.TryGetValue(key, out var name)) return name;
        name = UniqueValueName("const_scalar");
        AddTensor(name, OnnxDataType.Float, [], MemoryMarshal.AsBytes(new[] { value }.AsSpan()));
        return _constants[key] = name;
    }

    /// <summary>A 1-D int64 constant (Reshape shapes, Slice bounds, reduction axes), shared by value.</summary>
    public string Int64Vector(params long[] values)
    {
        var key = (OnnxDataType.Int64, string.Join(",", values));
        if (_constants.TryGetValue(key, out var name)) return name;
        name = UniqueValueName("const_ints");
        AddTensor(name, OnnxDataType.Int64, [values.Length], MemoryMarshal.AsBytes(values.AsSpan()));
        return _constants[key] = name;
    }

    /// <summary>
    /// Appends a node named <c>{scope}/{opType}</c> (made unique) with one output and returns the output's value name:
    /// <paramref name="output"/> (already reserved) or a fresh <c>{node}_output_0</c>.
    /// </summary>
    public string AddNode(string opType, string scope, IEnumerable<string> inputs, string? output = null, params AttributeProto[] attributes)
    {
        var nodeName = Unique(_nodeNames, scope + "/" + opType);
        var node = new NodeProto { Name = nodeName, OpType = opType };
        node.Input.AddRange(inputs);
        output ??= UniqueValueName($"{nodeName}_output_0");
        node.Output.Add(output);
        node.Attribute.AddRange(attributes);
        Graph.Node.Add(node);
        return output;
    }

    public ValueInfoProto ValueInfo(string name, ReadOnlySpan<int> shape, int batchAxis, int elemType = OnnxDataType.Float)
    {
        var tensorShape = new TensorShapeProto();
        for (var i = 0; i < shape.Length; i++)
            tensorShape.Dim.Add(dynamicBatch && i == batchAxis
                ? new TensorShapeProto.Types.Dimension { DimParam = batchDimName }
                : new TensorShapeProto.Types.Dimension { DimValue = shape[i] });
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = elemType, Shape = tensorShape } },
        };
    }

    public static AttributeProto Int(string name, long value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    public static AttributeProto Float(string name, float value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };

    public static AttributeProto Ints(string name, params long[] values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(values);
        return a;
    }
}
