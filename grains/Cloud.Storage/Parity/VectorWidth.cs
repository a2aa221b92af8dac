using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Cloud.Storage.Parity;

/// <summary>
/// The register width (and instruction set) the parity kernels run at; the value is the width in bytes.
/// </summary>
internal enum VectorWidth
{
    /// <summary>Portable code on 64-bit words (eight bytes at a time), no SIMD instructions.</summary>
    Scalar = 8,

    /// <summary>128-bit vectors (SSSE3 or Arm AdvSIMD).</summary>
    V128 = 16,

    /// <summary>256-bit vectors (AVX2).</summary>
    V256 = 32,

    /// <summary>512-bit vectors (AVX-512 BW).</summary>
    V512 = 64,

    /// <summary>
    /// 512-bit vectors with GFNI for the GF(2^8) multiplications (65 only to be distinct from <see cref="V512"/>).
    /// </summary>
    V512Gfni = 65,
}

/// <summary>Which <see cref="VectorWidth"/>s this machine can run, and which one is fastest.</summary>
internal static class VectorWidths
{
    /// <summary>The widest width the hardware accelerates; what the public <see cref="RaidMath"/> API uses.</summary>
    public static readonly VectorWidth Best = DetectBest();

    /// <summary>
    /// True when <paramref name="width"/> can run here. Wider than <see cref="Best"/> may still be
    /// supported (the instructions exist but the runtime prefers narrower vectors), which lets tests
    /// cover every path the machine has.
    /// </summary>
    public static bool IsSupported(VectorWidth width) => width switch
    {
        VectorWidth.Scalar => true,
        // Vector128 is always correct: its shuffle falls back to software where there is no
        // byte-shuffle instruction, which is slow but never wrong.
        VectorWidth.V128 => true,
        VectorWidth.V256 => Avx2.IsSupported,
        VectorWidth.V512 => Avx512BW.IsSupported,
        VectorWidth.V512Gfni => Avx512BW.IsSupported && Gfni.V512.IsSupported,
        _ => false,
    };

    /// <summary>Every supported width, narrowest first.</summary>
    public static IReadOnlyList<VectorWidth> Supported { get; } =
        [
            .. new[] { VectorWidth.Scalar, VectorWidth.V128, VectorWidth.V256, VectorWidth.V512, VectorWidth.V512Gfni }
                .Where(IsSupported),
        ];

    private static VectorWidth DetectBest()
    {
        if (Vector512.IsHardwareAccelerated && Avx512BW.IsSupported)
            return Gfni.V512.IsSupported ? VectorWidth.V512Gfni : VectorWidth.V512;
        if (Vector256.IsHardwareAccelerated && Avx2.IsSupported) return VectorWidth.V256;
        if (Vector128.IsHardwareAccelerated) return VectorWidth.V128;
        return VectorWidth.Scalar;
    }

    /// <summary>Throws when <paramref name="width"/> cannot run on this machine.</summary>
    public static void Require(VectorWidth width)
    {
        if (!IsSupported(width))
            throw new PlatformNotSupportedException(
                $"vector width {width} is not supported on this machine; supported: {string.Join(", ", Supported)}.");
    }
}
