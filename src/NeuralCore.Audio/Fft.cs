using System.Numerics;

namespace NeuralCore.Audio;

/// <summary>
/// A radix-2 fast Fourier transform of a fixed power-of-two size on split real/imaginary float arrays, with
/// the transform of a real signal (<see cref="ForwardReal"/>) computed through a half-size complex transform.
/// </summary>
/// <remarks>
/// Conventions follow NumPy: the forward transform is <c>X[k] = sum_n x[n] e^{-2 pi i k n / N}</c> (no scaling),
/// the inverse carries the 1/N. Twiddle factors are computed in double and stored per stage contiguously, so the
/// butterflies of a stage run as <see cref="Vector{T}"/> loops. An instance holds no per-call state and may be
/// shared between threads.
/// </remarks>
public sealed class Fft
{
    private readonly int[] _bitReverse;
    // Per stage s (butterfly span h = 2^s): cos and -sin of 2 pi j / (2h), j < h, stored at offset h - 1.
    private readonly float[] _cos;
    private readonly float[] _sin;
    // Real-transform post-processing twiddles e^{-2 pi i k / (2 Size)}, k <= Size.
    private readonly float[] _realCos;
    private readonly float[] _realSin;

    /// <summary>Prepares a complex transform of <paramref name="size"/> points (a power of two, at least 1).</summary>
    public Fft(int size)
    {
        if (size < 1 || !BitOperations.IsPow2(size))
            throw new ArgumentOutOfRangeException(nameof(size), size, $"The FFT size must be a power of two, found {size}; use {(size < 1 ? 1 : (int)BitOperations.RoundUpToPowerOf2((uint)size))}.");
        Size = size;
        int bits = BitOperations.Log2((uint)size);
        _bitReverse = new int[size];
        for (int i = 0; i < size; i++)
            _bitReverse[i] = bits == 0 ? 0 : (int)(ReverseBits((uint)i) >> (32 - bits));
        _cos = new float[Math.Max(1, size - 1)];
        _sin = new float[Math.Max(1, size - 1)];
        for (int h = 1; h < size; h <<= 1)
        {
            for (int j = 0; j < h; j++)
            {
                double angle = Math.PI * j / h;
                _cos[h - 1 + j] = (float)Math.Cos(angle);
                _sin[h - 1 + j] = (float)-Math.Sin(angle);
            }
        }
        _realCos = new float[size + 1];
        _realSin = new float[size + 1];
        for (int k = 0; k <= size; k++)
        {
            double angle = Math.PI * k / size;
            _realCos[k] = (float)Math.Cos(angle);
            _realSin[k] = (float)-Math.Sin(angle);
        }
    }

    /// <summary>The number of complex points of <see cref="Forward"/>; <see cref="ForwardReal"/> takes 2 x Size real samples.</summary>
    public int Size { get; }

    private static uint ReverseBits(uint v)
    {
        v = ((v >> 1) & 0x55555555u) | ((v & 0x55555555u) << 1);
        v = ((v >> 2) & 0x33333333u) | ((v & 0x33333333u) << 2);
        v = ((v >> 4) & 0x0F0F0F0Fu) | ((v & 0x0F0F0F0Fu) << 4);
        v = ((v >> 8) & 0x00FF00FFu) | ((v & 0x00FF00FFu) << 8);
        return (v >> 16) | (v << 16);
    }

    /// <summary>In-place forward complex transform of <see cref="Size"/> points held in <paramref name="re"/> and <paramref name="im"/>.</summary>
    public void Forward(Span<float> re, Span<float> im)
    {
        CheckLength(re, im, Size);
        Transform(re, im, inverse: false);
    }

    /// <summary>In-place inverse complex transform (scaled by 1 / <see cref="Size"/>), the inverse of <see cref="Forward"/>.</summary>
    public void Inverse(Span<float> re, Span<float> im)
    {
        CheckLength(re, im, Size);
        Transform(re, im, inverse: true);
        float scale = 1f / Size;
        for (int i = 0; i < Size; i++)
        {
            re[i] *= scale;
            im[i] *= scale;
        }
    }

    /// <summary>
    /// Transform of the real signal <paramref name="input"/> (2 x <see cref="Size"/> samples) into its
    /// <see cref="Size"/> + 1 non-negative-frequency bins (NumPy's <c>rfft</c>). <paramref name="re"/> and
    /// <paramref name="im"/> need <see cref="Size"/> + 1 elements.
    /// </summary>
    public void ForwardReal(ReadOnlySpan<float> input, Span<float> re, Span<float> im)
    {
        int m = Size;
        if (input.Length != 2 * m)
            throw new ArgumentException($"ForwardReal expects {2 * m} samples, found {input.Length}.", nameof(input));
        CheckLength(re, im, m + 1);
        // Pack even samples as the real part and odd samples as the imaginary part of an m-point signal.
        for (int n = 0; n < m; n++)
        {
            re[n] = input[2 * n];
            im[n] = input[2 * n + 1];
        }
        Transform(re[..m], im[..m], inverse: false);
        // Split Z = E + iO into the spectra of the even (E) and odd (O) samples, then X[k] = E[k] + W^k O[k].
        float z0r = re[0], z0i = im[0];
        re[0] = z0r + z0i;
        im[0] = 0;
        re[m] = z0r - z0i;
        im[m] = 0;
        for (int k = 1, j = m - 1; k <= j; k++, j--)
        {
            float ar = re[k], ai = im[k], br = re[j], bi = im[j];
            // Bin k.
            float er = 0.5f * (ar + br), ei = 0.5f * (ai - bi);
            float or = 0.5f * (ai + bi), oi = -0.5f * (ar - br);
            float wr = _realCos[k], wi = _realSin[k];
            float xr = er + (wr * or - wi * oi);
            float xi = ei + (wr * oi + wi * or);
            // Bin m - k uses the conjugate pairing.
            float er2 = er, ei2 = -ei;
            float or2 = or, oi2 = -oi;
            float wr2 = _realCos[j], wi2 = _realSin[j];
            re[j] = er2 + (wr2 * or2 - wi2 * oi2);
            im[j] = ei2 + (wr2 * oi2 + wi2 * or2);
            re[k] = xr;
            im[k] = xi;
        }
    }

    /// <summary>
    /// The real signal (2 x <see cref="Size"/> samples) whose <see cref="ForwardReal"/> is the given
    /// <see cref="Size"/> + 1 bins (NumPy's <c>irfft</c>); the imaginary parts of bins 0 and Size are ignored.
    /// <paramref name="re"/> and <paramref name="im"/> are overwritten.
    /// </summary>
    public void InverseReal(Span<float> re, Span<float> im, Span<float> output)
    {
        int m = Size;
        CheckLength(re, im, m + 1);
        if (output.Length != 2 * m)
            throw new ArgumentException($"InverseReal writes {2 * m} samples, found room for {output.Length}.", nameof(output));
        float x0 = re[0], xm = re[m];
        re[0] = 0.5f * (x0 + xm);
        im[0] = 0.5f * (x0 - xm);
        for (int k = 1, j = m - 1; k <= j; k++, j--)
        {
            float ar = re[k], ai = im[k], br = re[j], bi = im[j];
            // E[k] = (X[k] + conj X[m-k]) / 2; O[k] = (X[k] - conj X[m-k]) conj(W^k) / 2; Z[k] = E[k] + i O[k].
            float er = 0.5f * (ar + br), ei = 0.5f * (ai - bi);
            float dr = 0.5f * (ar - br), di = 0.5f * (ai + bi);
            float wr = _realCos[k], wi = -_realSin[k];
            float or = dr * wr - di * wi, oi = dr * wi + di * wr;
            float wr2 = _realCos[j], wi2 = -_realSin[j];
            float dr2 = -dr, di2 = di;
            float or2 = dr2 * wr2 - di2 * wi2, oi2 = dr2 * wi2 + di2 * wr2;
            re[k] = er - oi;
            im[k] = ei + or;
            re[j] = er - oi2;
            im[j] = -ei + or2;
        }
        Transform(re[..m], im[..m], inverse: true);
        float scale = 1f / m;
        for (int n = 0; n < m; n++)
        {
            output[2 * n] = re[n] * scale;
            output[2 * n + 1] = im[n] * scale;
        }
    }

    private static void CheckLength(Span<float> re, Span<float> im, int needed)
    {
        if (re.Length < needed || im.Length < needed)
            throw new ArgumentException($"The FFT buffers need {needed} elements, found {re.Length} (real) and {im.Length} (imaginary).");
    }

    private void Transform(Span<float> re, Span<float> im, bool inverse)
    {
        int n = Size;
        for (int i = 0; i < n; i++)
        {
            int j = _bitReverse[i];
            if (j > i)
            {
                (re[i], re[j]) = (re[j], re[i]);
                (im[i], im[j]) = (im[j], im[i]);
            }
        }
        // The inverse conjugates the twiddles: sin flips sign.
        float sign = inverse ? -1f : 1f;
        int width = Vector<float>.Count;
        for (int h = 1; h < n; h <<= 1)
        {
            ReadOnlySpan<float> cos = _cos.AsSpan(h - 1, h);
            ReadOnlySpan<float> sin = _sin.AsSpan(h - 1, h);
            for (int start = 0; start < n; start += 2 * h)
            {
                Span<float> ar = re.Slice(start, h), ai = im.Slice(start, h);
                Span<float> br = re.Slice(start + h, h), bi = im.Slice(start + h, h);
                int j = 0;
                if (h >= width)
                {
                    var vsign = new Vector<float>(sign);
                    for (; j <= h - width; j += width)
                    {
                        var c = new Vector<float>(cos[j..]);
                        var s = new Vector<float>(sin[j..]) * vsign;
                        var xr = new Vector<float>(br[j..]);
                        var xi = new Vector<float>(bi[j..]);
                        var tr = xr * c - xi * s;
                        var ti = xr * s + xi * c;
                        var ur = new Vector<float>(ar[j..]);
                        var ui = new Vector<float>(ai[j..]);
                        (ur + tr).CopyTo(ar[j..]);
                        (ui + ti).CopyTo(ai[j..]);
                        (ur - tr).CopyTo(br[j..]);
                        (ui - ti).CopyTo(bi[j..]);
                    }
                }
                for (; j < h; j++)
                {
                    float c = cos[j], s = sin[j] * sign;
                    float tr = br[j] * c - bi[j] * s;
                    float ti = br[j] * s + bi[j] * c;
                    float ur = ar[j], ui = ai[j];
                    ar[j] = ur + tr;
                    ai[j] = ui + ti;
                    br[j] = ur - tr;
                    bi[j] = ui - ti;
                }
            }
        }
    }
}
