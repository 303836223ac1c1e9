namespace NeuralCore.Cuda;

/// <summary>
/// A call into a CUDA library (driver, NVRTC, cuBLAS or cuDNN) failed. The message carries the library's
/// own error name and description, and for NVRTC the compiler log.
/// </summary>
public sealed class CudaException : Exception
{
    /// <summary>Creates the exception for a failed call.</summary>
    /// <param name="library">The library that reported the error, e.g. <c>CUDA driver</c>.</param>
    /// <param name="call">The function that failed, e.g. <c>cuMemAlloc</c>.</param>
    /// <param name="code">The library's numeric status.</param>
    /// <param name="errorName">The library's name for the status, e.g. <c>CUDA_ERROR_OUT_OF_MEMORY</c>.</param>
    /// <param name="description">The library's description of the status, plus any detail (a compiler log).</param>
    public CudaException(string library, string call, int code, string errorName, string description)
        : base($"{library} call {call} failed with {errorName} ({code}): {description}")
    {
        Library = library;
        Call = call;
        Code = code;
        ErrorName = errorName;
    }

    /// <summary>The library that reported the error.</summary>
    public string Library { get; }

    /// <summary>The function that failed.</summary>
    public string Call { get; }

    /// <summary>The library's numeric status code.</summary>
    public int Code { get; }

    /// <summary>The library's symbolic name for <see cref="Code"/>.</summary>
    public string ErrorName { get; }
}

/// <summary>
/// CUDA cannot be used on this machine: no NVIDIA driver, no GPU, or a required library is missing.
/// The message is one sentence saying what is missing and how to check or fix it, meant to be printed
/// to the user as is (the CLI prints it without a stack trace).
/// </summary>
public sealed class CudaUnavailableException : Exception
{
    /// <summary>Creates the exception with its one-sentence explanation.</summary>
    public CudaUnavailableException(string message) : base(message) { }

    /// <summary>Creates the exception with its one-sentence explanation and the failure behind it.</summary>
    public CudaUnavailableException(string message, Exception inner) : base(message, inner) { }
}
