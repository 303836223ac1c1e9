using NeuralCore.Autograd;

namespace NeuralCore.Onnx;

/// <summary>
/// A traced op the ONNX exporter cannot express (or cannot express with a dynamic batch). The message names the op and
/// the module it came from and says what to change.
/// </summary>
public sealed class OnnxExportException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">What failed and how to fix it.</param>
    /// <param name="opKind">The recorded op that could not be exported, if the failure is about one op.</param>
    /// <param name="moduleName">The dotted name of the module that recorded the op ("" for the model itself), if known.</param>
    public OnnxExportException(string message, OpKind? opKind = null, string? moduleName = null) : base(message)
    {
        OpKind = opKind;
        ModuleName = moduleName;
    }

    /// <summary>The recorded op that could not be exported, if the failure is about one op.</summary>
    public OpKind? OpKind { get; }

    /// <summary>The dotted name of the module that recorded the op ("" for the model itself), if known.</summary>
    public string? ModuleName { get; }
}
