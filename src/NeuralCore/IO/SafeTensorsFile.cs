using System.Collections;
using System.Diagnostics.CodeAnalysis;

namespace NeuralCore.IO;

/// <summary>
/// The contents of a safetensors file: its named arrays in file order (the order of their data in the
/// file) and its <c>__metadata__</c> string map. Enumerating it gives name/array pairs, so a file read
/// with <see cref="SafeTensors.Read(string)"/> can be passed straight back to
/// <see cref="SafeTensors.Write(string, IEnumerable{KeyValuePair{string, RawTensor}}, IReadOnlyDictionary{string, string}?)"/>.
/// </summary>
public sealed class SafeTensorsFile : IReadOnlyCollection<KeyValuePair<string, RawTensor>>
{
    private readonly List<KeyValuePair<string, RawTensor>> _tensors;
    private readonly Dictionary<string, RawTensor> _byName;
    private readonly string[] _names;

    internal SafeTensorsFile(string source, List<KeyValuePair<string, RawTensor>> tensors, Dictionary<string, string> metadata)
    {
        Source = source;
        _tensors = tensors;
        _byName = tensors.ToDictionary(t => t.Key, t => t.Value, StringComparer.Ordinal);
        _names = tensors.Select(t => t.Key).ToArray();
        Metadata = metadata;
    }

    /// <summary>The path or stream name the file was read from, as used in error messages.</summary>
    public string Source { get; }

    /// <summary>Tensor names in file order (ascending data offset; the header's order breaks ties between empty tensors).</summary>
    public IReadOnlyList<string> Names => _names;

    /// <summary>Number of tensors in the file.</summary>
    public int Count => _tensors.Count;

    /// <summary>The file's <c>__metadata__</c> map; empty when the file has none.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>The tensor called <paramref name="name"/> (names are case-sensitive).</summary>
    /// <param name="name">The tensor name, e.g. <c>in_c.0.weight</c>.</param>
    /// <exception cref="KeyNotFoundException">The file has no tensor of that name; the message lists the names it has.</exception>
    public RawTensor this[string name]
    {
        get
        {
            if (_byName.TryGetValue(name, out var tensor))
            {
                return tensor;
            }
            const int shown = 10;
            string list = string.Join(", ", _names.Take(shown).Select(n => $"'{n}'"));
            string more = _names.Length > shown ? $", and {_names.Length - shown} more" : "";
            throw new KeyNotFoundException(
                $"'{Source}' has no tensor named '{name}'. It holds {_names.Length} tensor(s): {list}{more}.");
        }
    }

    /// <summary>Looks up a tensor by name without throwing.</summary>
    /// <param name="name">The tensor name (case-sensitive).</param>
    /// <param name="tensor">The tensor when found.</param>
    /// <returns>Whether the file has a tensor called <paramref name="name"/>.</returns>
    public bool TryGet(string name, [MaybeNullWhen(false)] out RawTensor tensor) => _byName.TryGetValue(name, out tensor);

    /// <summary>Whether the file has a tensor called <paramref name="name"/>.</summary>
    /// <param name="name">The tensor name (case-sensitive).</param>
    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>Enumerates name/tensor pairs in file order.</summary>
    public IEnumerator<KeyValuePair<string, RawTensor>> GetEnumerator() => _tensors.GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}
