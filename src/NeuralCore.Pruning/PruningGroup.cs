namespace NeuralCore.Pruning;

/// <summary>One sliceable dimension in a group: a parameter's or buffer's dimension whose indices follow the group's channels.</summary>
/// <param name="Name">State-dict name of the tensor.</param>
/// <param name="Tensor">The parameter or buffer.</param>
/// <param name="Dim">The dimension that is sliced.</param>
/// <param name="IsParameter">True for parameters, false for buffers (running statistics).</param>
/// <param name="IsScored">Whether the member counts towards magnitude importance (weights and batch-norm scales).</param>
public sealed record GroupMember(string Name, Tensor Tensor, int Dim, bool IsParameter, bool IsScored);

/// <summary>
/// The smallest removable piece of a group: one channel, with the indices it occupies in each member
/// (usually one index each; a flatten gives a channel several features of a linear layer's input).
/// </summary>
/// <param name="Id">Position of the unit in its group.</param>
/// <param name="Indices">Indices per member (by position in <see cref="PruningGroup.Members"/>); members the unit does not reach are absent.</param>
public sealed record PruningUnit(int Id, IReadOnlyDictionary<int, IReadOnlyList<int>> Indices);

/// <summary>A set of coupled channel slices that are removed together, named after its producing module.</summary>
public sealed class PruningGroup
{
    internal PruningGroup(string name, IReadOnlyList<GroupMember> members, IReadOnlyList<PruningUnit> units)
    {
        Name = name;
        Members = members;
        Units = units;
    }

    /// <summary>
    /// The module whose output channels the group is (its first producer, e.g. <c>stage1.block1.conv1</c>); where one
    /// module produces several groups, the producing weight (e.g. <c>mixer.w1</c>).
    /// </summary>
    public string Name { get; }

    /// <summary>The sliced dimensions of parameters and buffers.</summary>
    public IReadOnlyList<GroupMember> Members { get; }

    /// <summary>The channels of the group.</summary>
    public IReadOnlyList<PruningUnit> Units { get; }

    /// <summary>Current number of channels.</summary>
    public int Width => Units.Count;

    /// <inheritdoc />
    public override string ToString() => $"{Name} (width {Width}, {Members.Count} members)";
}
