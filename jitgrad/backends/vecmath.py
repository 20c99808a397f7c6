"""Branch-free transcendental functions that LLVM auto-vectorizes inside Numba loops.

pip's llvmlite ships without SVML, so ``math.exp`` / ``math.tanh`` / ``math.log`` in an
``@njit`` loop stay scalar libm calls and keep LLVM from vectorizing the loop. These functions
are plain arithmetic instead: Cody-Waite range reduction, a polynomial (Cephes / fdlibm
coefficients; a degree-13 Taylor polynomial for float64 exp), ``2**k`` assembled from exponent
bits, and selects instead of branches for special values.

Use them inside ``@njit`` code: ``vexp vexpm1 vlog vlog1p vtanh vsigmoid verf``. Each maps float32
to float32 (computed in float32, so it vectorizes twice as wide), float64 to float64 and
integers to float64 (like ``math.exp``). Called from Python they go through a small jitted
wrapper (slow; for tests and debugging). ``REPLACEMENTS`` / ``rewrite`` map the ``math.*``
calls in the primitives' scalar templates to these names, for code generators.

How they get into the caller's loop: each function is compiled once per dtype on its own
(``error_model="numpy"``, no fastmath, disk-cached) and called with LLVM's ``alwaysinline``
call-site attribute, so LLVM inlines it into the loop whatever its size and then vectorizes the
loop. The caller's flags therefore change nothing: a ``fastmath=True`` caller cannot
reassociate away ``(t + SHIFT) - SHIFT`` or log1p's compensation term, and a caller with
Python's error model gets no ZeroDivisionError branch. Compiling a loop that uses them costs
about what the ``math.*`` version costs once the functions themselves are compiled (~0.1-0.3 s
each, once per process, or loaded from the cache).

Accuracy: max distance in ulp from the correctly rounded result ("exact") and from NumPy in the
same dtype. float32: every one of the 2**32 inputs, "exact" = the float64 result rounded to
float32. float64: 3.2e7 samples (log-uniform over every finite magnitude incl. subnormals,
both signs, and dense uniform samples over each function's interesting range), "exact" = the
80-bit long double result rounded. Special values (+-0, +-inf, nan, thresholds) agree with the
references everywhere they were compared. ``tests/test_vecmath.py`` enforces these bounds
(NumPy's own float32 exp and log are 3-4 ulp off; NumPy comparisons allow one more ulp there,
as NumPy's results vary with its build and CPU).

==========  =============  =============  =============  =============
function    f32 vs exact   f32 vs NumPy   f64 vs exact   f64 vs NumPy
==========  =============  =============  =============  =============
vexp        1              3              1              1
vexpm1      2              2              2              2
vlog        1              4              1              1
vlog1p      1              2              1              1
vtanh       1              2              1              2
vsigmoid    2              2 (*)          2              2 (*)
verf        3              3 (**)         0 (libm)       0 (**)
==========  =============  =============  =============  =============

(*) NumPy has no sigmoid: reference ``1 / (1 + exp(-x))`` one precision up, rounded.
(**) NumPy has no erf: SciPy's one precision up, rounded (float32); float64 verf is libm's.

Special values follow NumPy: exp overflows to inf and underflows through subnormals to 0,
exp(-inf) = 0; log(0) = -inf, log(x < 0) = nan, log(inf) = inf, subnormal inputs are exact
to 1 ulp; log1p(-1) = -inf; expm1, log1p and tanh keep relative accuracy for tiny x; tanh and
sigmoid saturate to +-1 and 0/1 without overflow for any x; nan propagates; signed zeros are
kept.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, lower_builtin, type_callable

__all__ = [
    "vexp", "vexpm1", "vlog", "vlog1p", "vtanh", "vsigmoid", "verf", "REPLACEMENTS", "rewrite"
]  # fmt: skip

# Per-element expression names in the scalar templates -> the names exported here.
REPLACEMENTS: dict[str, str] = {
    "math.exp": "vexp",
    "math.expm1": "vexpm1",
    "math.log": "vlog",
    "math.log1p": "vlog1p",
    "math.tanh": "vtanh",
    "math.erf": "verf",
}
_CALL = re.compile(r"\b(" + "|".join(re.escape(k) for k in REPLACEMENTS) + r")\b(?=\s*\()")


def rewrite(expr: str) -> str:
    """``expr`` with every ``math.*`` call that has a vectorizable twin renamed to it, e.g.
    ``"math.exp({0}) * 2"`` -> ``"vexp({0}) * 2"``; the caller imports the names it uses."""
    return _CALL.sub(lambda m: REPLACEMENTS[m.group(1)], expr)


# ---------------------------------------------------------------------------------------------
# Bit casts (llvm bitcast; vectorizes to nothing at all)


def _bitcast_intrinsic(src: types.Type, width: int, dst: types.Type, dst_ir: ir.Type):
    @intrinsic
    def cast(typingctx, v):
        if not (v == src or isinstance(src, types.Integer) and isinstance(v, types.Integer)):
            return None

        def codegen(context, builder, signature, args):
            val = args[0]
            if isinstance(val.type, ir.IntType) and val.type.width != width:
                # Numba widens integer arithmetic to int64; narrow back to the lane width.
                if val.type.width > width:
                    val = builder.trunc(val, ir.IntType(width))
                else:
                    val = builder.sext(val, ir.IntType(width))
            return builder.bitcast(val, dst_ir)

        return dst(v), codegen

    return cast


_SHIFT32_BITS = 0x4B400000  # bits of 1.5 * 2**23
_SHIFT64_BITS = 0x4338000000000000  # bits of 1.5 * 2**52
_bits32 = _bitcast_intrinsic(types.float32, 32, types.int32, ir.IntType(32))
_bits64 = _bitcast_intrinsic(types.float64, 64, types.int64, ir.IntType(64))
_from_bits32 = _bitcast_intrinsic(types.int64, 32, types.float32, ir.FloatType())
_from_bits64 = _bitcast_intrinsic(types.int64, 64, types.float64, ir.DoubleType())


@intrinsic
def _pow2_split(typingctx, shifted):
    """2**k as two factors (2**(k >> 1), 2**(k - (k >> 1))), where ``shifted = k + SHIFT`` holds
    k in its low mantissa bits. Written in IR so the integer work stays at the lane width
    (Numba would widen float32's int32 arithmetic to int64 and halve the vector width)."""
    if shifted not in (types.float32, types.float64):
        return None
    if shifted == types.float32:
        width, bias, mant, shift_bits = 32, 127, 23, _SHIFT32_BITS
    else:
        width, bias, mant, shift_bits = 64, 1023, 52, _SHIFT64_BITS
    ity = ir.IntType(width)

    def codegen(context, builder, signature, args):
        k = builder.sub(builder.bitcast(args[0], ity), ity(shift_bits))
        k1 = builder.ashr(k, ity(1))
        factors = []
        for part in (k1, builder.sub(k, k1)):
            bits = builder.shl(builder.add(part, ity(bias)), ity(mant))
            factors.append(builder.bitcast(bits, args[0].type))
        return context.make_tuple(builder, signature.return_type, factors)

    return types.UniTuple(shifted, 2)(shifted), codegen


# ---------------------------------------------------------------------------------------------
# Forced inlining


def _call_inlined(context, builder, impl, argtype, value):
    """IR calling ``impl`` (a dispatcher), compiled on its own for ``argtype``, at ``value``,
    with LLVM's ``alwaysinline``."""
    cres = impl.overloads[(argtype,)]
    context.add_linking_libs([cres.library])
    fn = context.declare_function(builder.module, cres.fndesc)
    # The call-site attribute overrides LLVM's size heuristic: without it a long body (tanh:
    # exp + polynomial + division) stays a call, and the caller's loop stays scalar. The status
    # is ignored: the implementations cannot raise.
    _, res = context.call_conv.call_function(
        builder, fn, cres.signature.return_type, (argtype,), (value,), attrs=("alwaysinline",)
    )
    return res


def _compiled_for(impl, argtype) -> types.Type:
    """Compile ``impl`` for ``argtype`` (with its own flags, not the caller's); its result type."""
    impl.compile((argtype,))
    return impl.overloads[(argtype,)].signature.return_type


def _inlined_call(impl):
    """An intrinsic calling ``impl``, compiled on its own, with LLVM's ``alwaysinline``."""

    @intrinsic
    def call(typingctx, x):
        def codegen(context, builder, signature, args):
            return _call_inlined(context, builder, impl, x, args[0])

        return _compiled_for(impl, x)(x), codegen

    call.impl = impl
    return call


def _kernel(fn):
    """Compile ``fn`` with NumPy's error model (no ZeroDivisionError branches) and return an
    intrinsic that calls it, always inlined. Only callable from jitted code."""
    try:
        compiled = njit(error_model="numpy", cache=True, no_cpython_wrapper=True)(fn)
    except RuntimeError:  # no writable cache location (read-only install, no home directory)
        compiled = njit(error_model="numpy", no_cpython_wrapper=True)(fn)
    return _inlined_call(compiled)


# ---------------------------------------------------------------------------------------------
# float32 constants (module globals of type float32 keep the arithmetic in float32)

f4 = np.float32
_ONE32, _TWO32, _HALF32, _ZERO32 = f4(1.0), f4(2.0), f4(0.5), f4(0.0)
_INF32, _NAN32 = f4(np.inf), f4(np.nan)
_LOG2E32 = f4(1.4426950408889634)
# ln2 split (Cody-Waite): k * _LN2HI32 is exact for |k| < 2**15.
_LN2HI32, _LN2LO32 = f4(0.693359375), f4(-2.12194440e-4)
_SHIFT32 = f4(12582912.0)  # 1.5 * 2**23: t + SHIFT rounds t to an integer held in the low bits
# exp input clamp: below -104 the result is 0 (smallest subnormal ~ e**-103.3), above 89 inf.
_XLO32, _XHI32 = f4(-104.0), f4(89.0)
# exp(r) - 1 - r ~ r**2 * P(r) on |r| <= ln2/2 (Cephes expf).
_E32 = tuple(f4(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                             4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1))  # fmt: skip
# log(1+f) - f + f**2/2 ~ f**3 * P(f) on sqrt(1/2)-1 <= f < sqrt(2)-1 (Cephes logf).
_L32 = tuple(f4(c) for c in (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1,
                             -1.2420140846e-1, 1.4249322787e-1, -1.6668057665e-1,
                             2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1))  # fmt: skip
_SQRT2_32 = f4(1.41421356237)
_MIN_NORMAL32 = f4(np.finfo(np.float32).tiny)
_TWO23_32 = f4(2.0**23)
_K_BIG32 = f4(100.0)
_TINY32 = f4(2.0**-26)  # below this, expm1(x) and log1p(x) round to x
# tanh(x) - x ~ x**3 P(x**2) on |x| < 0.625 (Cephes tanhf).
_T32 = tuple(f4(c) for c in (-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2,
                             1.33314422036e-1, -3.33332819422e-1))  # fmt: skip
_TANH_SPLIT32 = f4(0.625)


# Shared by exp, expm1, tanh and sigmoid: inlined into each at the Numba IR level, before
# typing, so it is never compiled on its own (a separately compiled, always-inlined helper
# linked into several callers made one caller call another's copy; as an overload it was
# compiled whole first, 0.1 s of a cold start).
@njit(inline="always")
def _exp_parts32(x):
    """x = k ln2 + r, |r| <= ln2/2. Returns expm1(r), 2**k as two factors, and k (a float)."""
    # Clamp keeping nan (comparisons with nan are false); nan flows on through r.
    xc = _XLO32 if x < _XLO32 else x
    xc = _XHI32 if xc > _XHI32 else xc
    shifted = xc * _LOG2E32 + _SHIFT32
    kf = shifted - _SHIFT32
    r = (xc - kf * _LN2HI32) - kf * _LN2LO32
    c0, c1, c2, c3, c4, c5 = _E32
    p = ((((c0 * r + c1) * r + c2) * r + c3) * r + c4) * r + c5
    em = p * (r * r) + r
    # Two factors so that 2**k for k in [-150, 128] never leaves the normal range: the first
    # product is exact, the second rounds once (correctly into subnormals, or to inf).
    s1, s2 = _pow2_split(shifted)
    return em, s1, s2, kf


@_kernel
def _exp32(x):
    em, s1, s2, _ = _exp_parts32(x)
    return ((em + _ONE32) * s1) * s2


@_kernel
def _expm1_32(x):
    em, s1, s2, kf = _exp_parts32(x)
    s = s1 * s2
    # 2**k (em + 1) - 1 = 2**k em + (2**k - 1); 2**k - 1 is exact for small k.
    y = em * s + (s - _ONE32)
    y = ((em + _ONE32) * s1) * s2 if kf > _K_BIG32 else y  # s itself would overflow
    return x if abs(x) < _TINY32 else y  # tiny x and -0.0


@_kernel
def _log32(x):
    # Scale subnormals into the normal range first.
    sub = x < _MIN_NORMAL32
    xs = x * _TWO23_32 if sub else x
    ix = _bits32(xs)
    e = ((ix >> 23) & 0xFF) - (150 if sub else 127)
    m = _from_bits32((ix & 0x7FFFFF) | 0x3F800000)  # mantissa in [1, 2)
    big = m > _SQRT2_32
    m = m * _HALF32 if big else m
    e = e + 1 if big else e
    ef = np.float32(np.int32(e))
    f = m - _ONE32
    z = f * f
    c0, c1, c2, c3, c4, c5, c6, c7, c8 = _L32
    p = (((((((c0 * f + c1) * f + c2) * f + c3) * f + c4) * f + c5) * f + c6) * f + c7) * f + c8
    y = p * f * z + ef * _LN2LO32 - _HALF32 * z
    y = (f + y) + ef * _LN2HI32
    y = -_INF32 if x == _ZERO32 else y
    y = _NAN32 if x < _ZERO32 else y
    return x + x if not x < _INF32 else y  # inf stays inf, nan stays nan


@_kernel
def _log1p32(x):
    # log(1 + x) = log(u) + (x - (u - 1)) / u with u = 1 + x: the second term restores what
    # rounding u dropped.
    u = x + _ONE32
    y = _log32(u) + (x - (u - _ONE32)) / u
    y = -_INF32 if u == _ZERO32 else y
    y = x if not x < _INF32 else y
    return x if abs(x) < _TINY32 else y


@_kernel
def _tanh32(x):
    # |x| < 0.625: odd polynomial (Cephes tanhf); above: 1 - 2/(exp(2|x|) + 1), which
    # saturates to 1 once exp overflows. Both are computed and one is selected.
    a = abs(x)
    z = a * a
    c0, c1, c2, c3, c4 = _T32
    small = ((((c0 * z + c1) * z + c2) * z + c3) * z + c4) * z * a + a
    large = _ONE32 - _TWO32 / (_exp32(_TWO32 * a) + _ONE32)
    return math.copysign(small if a < _TANH_SPLIT32 else large, x)


@_kernel
def _sigmoid32(x):
    # e = exp(-|x|) <= 1 never overflows; sigmoid(x) = 1/(1+e) for x >= 0, e/(1+e) below.
    e = _exp32(-abs(x))
    return (_ONE32 if x >= _ZERO32 else e) / (_ONE32 + e)


# ---------------------------------------------------------------------------------------------
# float64

_LOG2E64 = 1.4426950408889634
_LN2HI64, _LN2LO64 = 6.93145751953125e-1, 1.42860682030941723212e-6  # Cephes exp split
_SHIFT64 = 6755399441055744.0  # 1.5 * 2**52
_XLO64, _XHI64 = -750.0, 710.0
# Taylor coefficients 1/13!, ..., 1/2!: truncation error < 5e-18 relative on |r| <= ln2/2.
_E64 = tuple(1.0 / math.factorial(n) for n in range(13, 1, -1))
# fdlibm log: log(1+f) via s = f/(2+f), polynomial in s**2.
_LG = (6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01,
       2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01,
       1.479819860511658591e-01)  # fmt: skip
_LOGHI64, _LOGLO64 = 6.93147180369123816490e-01, 1.90821492927058770002e-10
_SQRT2_64 = 1.4142135623730951
_MIN_NORMAL64 = float(np.finfo(np.float64).tiny)
_TWO54 = 2.0**54
_TINY64 = 2.0**-55  # below this, expm1(x) and log1p(x) round to x
# tanh(x) - x ~ x**3 P(x**2) / Q(x**2) on |x| < 0.625 (Cephes tanh; Q is monic).
_TP64 = (-9.64399179425052238628e-1, -9.92877231001918586564e1, -1.61468768441708447952e3)
_TQ64 = (1.12811678491632931402e2, 2.23548839060100448583e3, 4.84406305325125486048e3)


# float64's _exp_parts32 (inlined the same way)
@njit(inline="always")
def _exp_parts64(x):
    xc = _XLO64 if x < _XLO64 else x
    xc = _XHI64 if xc > _XHI64 else xc
    shifted = xc * _LOG2E64 + _SHIFT64
    kf = shifted - _SHIFT64
    r = (xc - kf * _LN2HI64) - kf * _LN2LO64
    c = _E64
    p = c[0] * r + c[1]
    p = ((((p * r + c[2]) * r + c[3]) * r + c[4]) * r + c[5]) * r + c[6]
    p = ((((p * r + c[7]) * r + c[8]) * r + c[9]) * r + c[10]) * r + c[11]
    em = p * (r * r) + r
    s1, s2 = _pow2_split(shifted)
    return em, s1, s2, kf


@_kernel
def _exp64(x):
    em, s1, s2, _ = _exp_parts64(x)
    return ((em + 1.0) * s1) * s2


@_kernel
def _expm1_64(x):
    em, s1, s2, kf = _exp_parts64(x)
    s = s1 * s2
    y = em * s + (s - 1.0)
    y = ((em + 1.0) * s1) * s2 if kf > 1000.0 else y  # s itself would overflow
    return x if abs(x) < _TINY64 else y


@_kernel
def _log64(x):
    sub = x < _MIN_NORMAL64
    xs = x * _TWO54 if sub else x
    ix = _bits64(xs)
    e = ((ix >> 52) & 0x7FF) - (1077 if sub else 1023)
    m = _from_bits64((ix & 0xFFFFFFFFFFFFF) | 0x3FF0000000000000)
    big = m > _SQRT2_64
    m = m * 0.5 if big else m
    e = e + 1 if big else e
    ef = np.float64(np.int32(e))  # int32 -> float64 converts packed on AVX2 too
    f = m - 1.0
    hfsq = 0.5 * f * f
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (_LG[1] + w * (_LG[3] + w * _LG[5]))
    t2 = z * (_LG[0] + w * (_LG[2] + w * (_LG[4] + w * _LG[6])))
    y = ef * _LOGHI64 - ((hfsq - (s * (hfsq + (t1 + t2)) + ef * _LOGLO64)) - f)
    y = -np.inf if x == 0.0 else y
    y = np.nan if x < 0.0 else y
    return x + x if not x < np.inf else y


@_kernel
def _log1p64(x):
    u = x + 1.0
    y = _log64(u) + (x - (u - 1.0)) / u
    y = -np.inf if u == 0.0 else y
    y = x if not x < np.inf else y
    return x if abs(x) < _TINY64 else y


@_kernel
def _tanh64(x):
    # As _tanh32, with Cephes' rational approximation below 0.625. Both branches have the form
    # base + num / den, so one division serves both.
    a = abs(x)
    z = a * a
    p0, p1, p2 = _TP64
    q0, q1, q2 = _TQ64
    num_small = a * z * ((p0 * z + p1) * z + p2)
    den_small = ((z + q0) * z + q1) * z + q2
    small = a < 0.625
    base = a if small else 1.0
    num = num_small if small else -2.0
    den = den_small if small else _exp64(2.0 * a) + 1.0
    return math.copysign(base + num / den, x)


@_kernel
def _sigmoid64(x):
    e = _exp64(-abs(x))
    return (1.0 if x >= 0.0 else e) / (1.0 + e)


# ---------------------------------------------------------------------------------------------
# Public names: one stub per function, typed by argument dtype.

_PY_WRAPPERS: dict[str, Callable] = {}


def _call_from_python(name: str, x):
    # Outside jitted code: compile a one-line wrapper once and call it.
    fn = _PY_WRAPPERS.get(name)
    if fn is None:
        stub = globals()[name]
        fn = _PY_WRAPPERS[name] = njit(lambda v: stub(v))
    return fn(x)


def _register(name: str, impl32, impl64) -> Callable:
    def stub(x):
        return _call_from_python(name, x)

    stub.__name__ = stub.__qualname__ = name

    def pick(x):  # (implementation, the type it takes) for an argument type
        if isinstance(x, types.Float):
            return (impl32 if x.bitwidth == 32 else impl64).impl, x
        if isinstance(x, types.Integer):
            return impl64.impl, types.float64
        return None, None

    # Typed and lowered directly (a typing rule and a lowering, no overload): a call is one
    # always-inlined call of the compiled implementation, with nothing else to compile.
    @type_callable(stub)
    def _type(context):
        def typer(x):
            impl, argtype = pick(x)
            return None if impl is None else _compiled_for(impl, argtype)

        return typer

    @lower_builtin(stub, types.Number)
    def _lower(context, builder, sig, args):
        impl, argtype = pick(sig.args[0])
        value = context.cast(builder, args[0], sig.args[0], argtype)
        return _call_inlined(context, builder, impl, argtype, value)

    return stub


# erf for float32, in float32: below 0.8 its Taylor series to x**17 (truncation < 2e-9
# relative), above it 1 - erfc with the Chebyshev-fitted erfc of Numerical Recipes (relative
# error < 1.2e-7 of erfc, which is under 0.26 there); both are computed and one is selected.
# Within 3 ulp of the correctly rounded erf (the float32 rounding of erfc's evaluation).
# float64 erf stays libm's (no float64 formula here is accurate enough).
_ERF_TAYLOR32 = tuple(
    f4((-1) ** n / (math.factorial(n) * (2 * n + 1)) * 2 / math.sqrt(math.pi)) for n in range(9)
)
_ERFC_NR32 = tuple(f4(c) for c in (-1.26551223, 1.00002368, 0.37409196, 0.09678418,
                                   -0.18628806, 0.27886807, -1.13520398, 1.48851587,
                                   -0.82215223, 0.17087277))  # fmt: skip
_ERF_SPLIT32 = f4(0.8)


@_kernel
def _erf32(x):
    a = abs(x)
    z = a * a
    c = _ERF_TAYLOR32
    p = ((((c[8] * z + c[7]) * z + c[6]) * z + c[5]) * z + c[4]) * z + c[3]
    small = a * (((p * z + c[2]) * z + c[1]) * z + c[0])
    t = _ONE32 / (_ONE32 + _HALF32 * a)
    d = _ERFC_NR32
    q = ((((d[9] * t + d[8]) * t + d[7]) * t + d[6]) * t + d[5]) * t + d[4]
    q = (((q * t + d[3]) * t + d[2]) * t + d[1]) * t + d[0]
    em, s1, s2, _ = _exp_parts32(q - z)
    large = _ONE32 - t * (((em + _ONE32) * s1) * s2)
    return math.copysign(small if a < _ERF_SPLIT32 else large, x)


def erf32_numpy(x: np.ndarray) -> np.ndarray:
    """``verf`` on a float32 array in NumPy: the same float32 operations in the same order
    (exp's range reduction and 2**k from bits included), so the result is bit for bit that of
    ``verf`` in a loop (eager code runs this until that loop is compiled)."""
    with np.errstate(all="ignore"):
        a = np.abs(x)
        z = a * a
        c = _ERF_TAYLOR32
        p = ((((c[8] * z + c[7]) * z + c[6]) * z + c[5]) * z + c[4]) * z + c[3]
        small = a * (((p * z + c[2]) * z + c[1]) * z + c[0])
        t = _ONE32 / (_ONE32 + _HALF32 * a)
        d = _ERFC_NR32
        q = ((((d[9] * t + d[8]) * t + d[7]) * t + d[6]) * t + d[5]) * t + d[4]
        q = (((q * t + d[3]) * t + d[2]) * t + d[1]) * t + d[0]
        v = q - z
        v = np.where(v < _XLO32, _XLO32, v)  # (comparisons with nan are false: nan stays)
        v = np.where(v > _XHI32, _XHI32, v)
        shifted = v * _LOG2E32 + _SHIFT32
        kf = shifted - _SHIFT32
        r = (v - kf * _LN2HI32) - kf * _LN2LO32
        e = _E32
        pe = ((((e[0] * r + e[1]) * r + e[2]) * r + e[3]) * r + e[4]) * r + e[5]
        em = pe * (r * r) + r
        k = shifted.view(np.int32) - np.int32(_SHIFT32_BITS)
        k1 = k >> 1
        s1 = ((k1 + 127) << 23).view(np.float32)
        s2 = ((k - k1 + 127) << 23).view(np.float32)
        large = _ONE32 - t * (((em + _ONE32) * s1) * s2)
        return np.copysign(np.where(a < _ERF_SPLIT32, small, large), x).astype(np.float32)


@_kernel
def _erf64(x):
    return math.erf(x)


vexp = _register("vexp", _exp32, _exp64)
vexpm1 = _register("vexpm1", _expm1_32, _expm1_64)
vlog = _register("vlog", _log32, _log64)
vlog1p = _register("vlog1p", _log1p32, _log1p64)
vtanh = _register("vtanh", _tanh32, _tanh64)
vsigmoid = _register("vsigmoid", _sigmoid32, _sigmoid64)
verf = _register("verf", _erf32, _erf64)
vexp.__doc__ = "exp(x), vectorizable; float32 stays float32."
vexpm1.__doc__ = "exp(x) - 1, accurate for tiny x; vectorizable."
vlog.__doc__ = "Natural log; log(0) = -inf, log(x < 0) = nan; vectorizable."
vlog1p.__doc__ = "log(1 + x), accurate for tiny x; vectorizable."
vtanh.__doc__ = "tanh(x), branch-free, relative accuracy near 0; vectorizable."
vsigmoid.__doc__ = "1 / (1 + exp(-x)) without overflow for any x; vectorizable."
verf.__doc__ = "erf(x); float32 vectorizable, float64 libm's."
