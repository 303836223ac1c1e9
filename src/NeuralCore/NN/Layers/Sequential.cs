using System.Collections;

namespace NeuralCore.NN;

/// <summary>
/// Runs its children in order, each on the previous one's output (PyTorch's <c>nn.Sequential</c>). Children are
/// named "0", "1", ... so state-dict keys read <c>in_c.0.weight</c>, <c>in_c.1.running_mean</c>.
/// </summary>
public sealed class Sequential : Module, IEnumerable<Module>
{
    /// <summary>A container holding <paramref name="modules"/> in order.</summary>
    public Sequential(params Module[] modules)
    {
        foreach (var m in modules) Add(m);
    }

    /// <summary>Number of children.</summary>
    public int Count => NamedChildren().Count();

    /// <summary>The child at position <paramref name="index"/> (negative counts from the end, as in Python).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The index is outside [-Count, Count).</exception>
    public Module this[int index]
    {
        get
        {
            var children = NamedChildren().Select(c => c.Module).ToList();
            var i = index < 0 ? index + children.Count : index;
            if (i < 0 || i >= children.Count)
                throw new ArgumentOutOfRangeException(nameof(index), index, $"Sequential has {children.Count} children; valid indices are {-children.Count}..{children.Count - 1}.");
            return children[i];
        }
    }

    /// <summary>Appends <paramref name="module"/> under the next index name and returns this container.</summary>
    public Sequential Add(Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        RegisterModule(Count.ToString(System.Globalization.CultureInfo.InvariantCulture), module);
        return this;
    }

    /// <inheritdoc />
    public override Tensor Forward(Tensor input)
    {
        var x = input;
        foreach (var (_, child) in NamedChildren()) x = child.Call(x);
        return x;
    }

    /// <summary>The children in order.</summary>
    public IEnumerator<Module> GetEnumerator() => NamedChildren().Select(c => c.Module).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}
