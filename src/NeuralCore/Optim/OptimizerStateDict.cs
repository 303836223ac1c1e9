namespace NeuralCore.Optim;

/// <summary>
/// An optimizer's state in a form that saves to a checkpoint: tensors by key (safetensors) and scalars by key
/// (metadata), so training resumes exactly.
/// </summary>
/// <remarks>
/// Keys follow PyTorch's <c>state_dict()</c> flattened with dots. Parameters are numbered across all groups in
/// order. Tensors: <c>state.{index}.{name}</c> (<c>exp_avg</c>, <c>exp_avg_sq</c>, <c>max_exp_avg_sq</c>,
/// <c>momentum_buffer</c>). Scalars: <c>state.{index}.step</c>, <c>param_groups.{group}.{option}</c> for each
/// option (<c>lr</c>, <c>weight_decay</c>, ...) and <c>param_groups.{group}.param_count</c>.
/// </remarks>
public sealed class OptimizerStateDict
{
    /// <summary>State tensors by key (copies, detached from the optimizer).</summary>
    public Dictionary<string, Tensor> Tensors { get; } = new();

    /// <summary>Step counts and hyper-parameters by key.</summary>
    public Dictionary<string, double> Scalars { get; } = new();
}
