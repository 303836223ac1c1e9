using System.Globalization;

namespace NeuralCore.NN;

/// <summary>Formats values the way Python prints them, so <see cref="Module.ExtraRepr"/> reads like PyTorch's.</summary>
internal static class Repr
{
    /// <summary>Python's <c>repr(float)</c>: shortest round-trip digits, <c>1e-05</c>, <c>0.1</c>, <c>1.0</c>.</summary>
    public static string Float(double value)
    {
        if (double.IsPositiveInfinity(value)) return "inf";
        if (double.IsNegativeInfinity(value)) return "-inf";
        if (double.IsNaN(value)) return "nan";
        var s = value.ToString("R", CultureInfo.InvariantCulture);
        var e = s.IndexOf('E');
        if (e < 0) return s.Contains('.') ? s : s + ".0";
        // .NET writes 1E-05 / 1E+16; Python writes 1e-05 / 1e+16.
        return s[..e] + "e" + s[(e + 1)..];
    }

    /// <summary>Python's <c>True</c> / <c>False</c>.</summary>
    public static string Bool(bool value) => value ? "True" : "False";

    /// <summary>A single number when both sizes agree (how a pool built from an int prints), else the tuple.</summary>
    public static string Size(Size2 size) => size.H == size.W ? size.H.ToString(CultureInfo.InvariantCulture) : size.ToString();
}
