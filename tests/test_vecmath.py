"""jitgrad.backends.vecmath against NumPy: ulp bounds over wide ranges, special values, and that
the functions vectorize inside @njit loops whatever the caller's flags."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from numba import njit

from jitgrad.backends import vecmath as vm
from jitgrad.backends.vecmath import verf, vexp, vexpm1, vlog, vlog1p, vsigmoid, vtanh
from jitgrad.ops.registry import PRIMS

NAMES = ("vexp", "vexpm1", "vlog", "vlog1p", "vtanh", "vsigmoid")
DTYPES = (np.float32, np.float64)
# Max ulp from the correctly rounded result, and from NumPy in the same dtype (the module
# docstring's table; sigmoid's "NumPy" is the formula one precision up).
ULP_EXACT = {
    np.float32: {"vexp": 1, "vexpm1": 2, "vlog": 1, "vlog1p": 1, "vtanh": 1, "vsigmoid": 2},
    np.float64: {"vexp": 1, "vexpm1": 2, "vlog": 1, "vlog1p": 1, "vtanh": 1, "vsigmoid": 2},
}
ULP_NUMPY = {
    np.float32: {"vexp": 3, "vexpm1": 2, "vlog": 4, "vlog1p": 2, "vtanh": 2, "vsigmoid": 2},
    np.float64: {"vexp": 1, "vexpm1": 2, "vlog": 1, "vlog1p": 1, "vtanh": 2, "vsigmoid": 2},
}
# verf (tested apart: its reference is SciPy's erf one precision up, rounded)
ULP_NUMPY[np.float32]["verf"], ULP_NUMPY[np.float64]["verf"] = 3, 0
NUMPY_SLACK = 1  # NumPy's own (SIMD) results vary with its build and the CPU
EXTENDED = np.finfo(np.longdouble).nmant >= 63  # x87 long double: an exact-enough reference


def _body(x, out):
    for i in range(x.shape[0]):
        v = x[i]
        out[0, i] = vexp(v)
        out[1, i] = vexpm1(v)
        out[2, i] = vlog(v)
        out[3, i] = vlog1p(v)
        out[4, i] = vtanh(v)
        out[5, i] = vsigmoid(v)


_eval_all = njit(_body)
_eval_all_fastmath = njit(fastmath=True)(_body)


def _evaluate(x: np.ndarray, fn=_eval_all) -> dict[str, np.ndarray]:
    out = np.empty((len(NAMES), x.size), x.dtype)
    fn(x, out)
    return dict(zip(NAMES, out))


def _reference(name: str, x: np.ndarray, exact: bool) -> np.ndarray:
    """NumPy in x's dtype, or (exact) NumPy one precision up, rounded back."""
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    fns = {"vexp": np.exp, "vexpm1": np.expm1, "vlog": np.log, "vlog1p": np.log1p}
    fns |= {"vtanh": np.tanh, "vsigmoid": sigmoid}
    wide = {np.float32: np.float64, np.float64: np.longdouble}[x.dtype.type]
    with np.errstate(all="ignore"):
        if exact or name == "vsigmoid":  # NumPy has no sigmoid: the formula one precision up
            return fns[name](x.astype(wide)).astype(x.dtype)
        return fns[name](x)


def _ulp(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in units in the last place; huge where nan-ness or inf-ness differ."""
    bits = {4: np.int32, 8: np.int64}[a.itemsize]
    mask = np.iinfo(bits).max

    def ordered(v):
        i = v.view(bits).astype(np.int64)
        return np.where(i < 0, -(i & mask), i)  # monotone in the value; +0 and -0 coincide

    d = np.abs(ordered(a) - ordered(b))
    d = np.where(np.isnan(a) & np.isnan(b), 0, d)
    return np.where((np.isnan(a) != np.isnan(b)) | (np.isinf(a) != np.isinf(b)), 1 << 62, d)


def _samples(dtype) -> np.ndarray:
    fi = np.finfo(dtype)
    rng = np.random.default_rng(1234)
    lo, hi = np.log(float(fi.smallest_subnormal)), np.log(float(fi.max))
    mags = np.exp(rng.uniform(lo, hi, 60_000))  # every magnitude, subnormals included
    edges = [float(np.log(fi.max)), float(np.log(fi.smallest_subnormal)), float(np.log(fi.tiny))]
    edges = np.array(edges + [-v for v in edges], dtype)
    around = np.concatenate([edges + k * np.spacing(edges) for k in range(-3, 4)])
    special = [0, fi.max, fi.tiny, fi.smallest_subnormal, 1, np.inf, 0.625, 1e-8]
    special = np.array(special, dtype)
    with np.errstate(over="ignore"):
        xs = [
            mags,
            -mags,
            rng.uniform(-1, 1, 20_000) * rng.choice([1e-3, 1, 3, 20, 100, 800], 20_000),
            np.linspace(-120, 120, 40_001),
            np.linspace(-1.5, 1.5, 30_001),
            around,
            special,
            -special,
            [np.nan, -1, np.nextafter(dtype(-1), dtype(0)), np.nextafter(dtype(-1), dtype(-2))],
        ]
        return np.concatenate([np.asarray(v, dtype=dtype) for v in xs]).astype(dtype)


@pytest.fixture(scope="module", params=DTYPES, ids=lambda d: d.__name__)
def evaluated(request):
    dtype = request.param
    x = _samples(dtype)
    return dtype, x, _evaluate(x)


@pytest.mark.parametrize("name", NAMES)
def test_ulp_against_numpy(evaluated, name):
    dtype, x, got = evaluated
    checks = [("NumPy", False, ULP_NUMPY[dtype][name] + NUMPY_SLACK)]
    if dtype == np.float32 or EXTENDED:
        checks.append(("correctly rounded", True, ULP_EXACT[dtype][name]))
    for label, exact, bound in checks:
        u = _ulp(got[name], _reference(name, x, exact))
        worst = int(u.argmax())
        assert u[worst] <= bound, (
            f"{name}({x[worst]!r}) = {got[name][worst]!r}: {u[worst]} ulp from {label} "
            f"{_reference(name, x[worst : worst + 1], exact)[0]!r} (bound {bound})"
        )


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_special_values(dtype):
    fi = np.finfo(dtype)
    inf, nan, tiny = np.inf, np.nan, float(fi.smallest_subnormal)
    over = float(np.log(fi.max))  # exp overflows just above this
    under = float(np.log(fi.smallest_subnormal))  # and underflows to 0 a little below this
    cases = {
        "vexp": [(inf, inf), (-inf, 0), (nan, nan), (0, 1), (-0.0, 1), (1000, inf),
                 (-1000, 0), (under - 1, 0), (over * (1 + 4 * fi.eps), inf)],
        "vexpm1": [(inf, inf), (-inf, -1), (nan, nan), (0, 0), (-0.0, -0.0), (1000, inf),
                   (-1000, -1), (tiny, tiny), (-tiny, -tiny)],
        "vlog": [(0, -inf), (-0.0, -inf), (-1, nan), (-inf, nan), (inf, inf), (nan, nan),
                 (1, 0)],
        "vlog1p": [(-1, -inf), (-2, nan), (inf, inf), (nan, nan), (0, 0), (-0.0, -0.0),
                   (tiny, tiny), (-inf, nan)],
        "vtanh": [(inf, 1), (-inf, -1), (nan, nan), (0, 0), (-0.0, -0.0), (50, 1), (-50, -1),
                  (1e4, 1), (tiny, tiny), (-tiny, -tiny)],
        "vsigmoid": [(inf, 1), (-inf, 0), (nan, nan), (0, 0.5), (1e4, 1), (-1e4, 0)],
    }  # fmt: skip
    with np.errstate(over="ignore"):
        args = {repr(dtype(v)): dtype(v) for pairs in cases.values() for v, _ in pairs}
    x = np.array(list(args.values()), dtype)
    got = _evaluate(x)
    index = {key: i for i, key in enumerate(args)}
    for name, pairs in cases.items():
        for arg, want in pairs:
            have = got[name][index[repr(dtype(arg))]]
            ok = (np.isnan(want) and np.isnan(have)) or (
                have == want and np.signbit(have) == np.signbit(want)
            )
            assert ok, f"{name}({dtype(arg)!r}) = {have!r}, expected {dtype(want)!r}"
    # Just inside the range: finite / nonzero, no premature overflow or underflow.
    edge = np.array([over * (1 - 4 * fi.eps), under + 0.5, -over * (1 - 4 * fi.eps)], dtype)
    g = _evaluate(edge)
    assert np.isfinite(g["vexp"][0]) and g["vexp"][1] > 0 and g["vsigmoid"][2] > 0


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_tiny_arguments_keep_relative_accuracy(dtype):
    fi = np.finfo(dtype)
    mags = np.logspace(np.log10(float(fi.tiny)), -1, 400).astype(dtype)
    x = np.concatenate([mags, -mags])
    got = _evaluate(x)
    for name, ref in (("vexpm1", np.expm1), ("vlog1p", np.log1p), ("vtanh", np.tanh)):
        rel = np.abs(got[name] / ref(x.astype(np.float64)).astype(dtype) - 1)
        assert rel.max() <= 4 * fi.eps, (name, x[rel.argmax()], rel.max())


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_sigmoid_stays_in_unit_interval(dtype):
    x = _samples(dtype)
    s = _evaluate(x)["vsigmoid"]
    finite = ~np.isnan(x)
    assert not np.isnan(s[finite]).any()
    assert ((s[finite] >= 0) & (s[finite] <= 1)).all()
    # Saturates only where the true value rounds to 0 or 1.
    assert (s[(x > -80) & (x < 0)] > 0).all() and (s[(x < 15) & (x > 0)] < 1).all()


def test_dtype_of_results():
    @njit
    def kinds(a, b, n):
        return vexp(a), vtanh(b), vlog(n)

    r32, r64, rint = kinds(np.float32(1), 1.0, 3)
    assert isinstance(r32, float) and r32 == pytest.approx(math.e, rel=1e-6)
    assert kinds.nopython_signatures[0].return_type.types[0].bitwidth == 32
    assert r64 == pytest.approx(math.tanh(1.0), rel=1e-15)
    assert rint == pytest.approx(math.log(3), rel=1e-15)  # integers compute in float64
    assert vm.vexpm1(1e-20) == 1e-20  # callable from Python too (through a jitted wrapper)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_fastmath_caller_does_not_change_results(dtype):
    # The functions are compiled apart with their own flags and inlined by LLVM, so a
    # fastmath caller cannot reassociate away log1p's compensation term or the exp rounding.
    x = _samples(dtype)
    plain, fast = _evaluate(x), _evaluate(x, _eval_all_fastmath)
    for name in NAMES:
        assert np.array_equal(plain[name], fast[name], equal_nan=True), name


@njit
def _fused(x, out, a, b):
    # The shape of the fused loops generated for tanh/sigmoid/exp-heavy graphs. (a, b have x's
    # dtype: a Python float literal would promote float32 to float64.)
    for i in range(x.shape[0]):
        v = x[i]
        out[i] = vtanh(a * v + b) * vsigmoid(v) + vexp(-v * v) + vlog1p(v * v)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_fused_loop_vectorizes(dtype):
    x = np.linspace(-5, 5, 1001).astype(dtype)
    out = np.empty_like(x)
    _fused(x, out, dtype(1.5), dtype(0.5))
    xd = x.astype(np.float64)
    want = np.tanh(1.5 * xd + 0.5) / (1 + np.exp(-xd)) + np.exp(-xd * xd) + np.log1p(xd * xd)
    np.testing.assert_allclose(out, want, rtol=30 * np.finfo(dtype).eps, atol=1e-6)
    llvm = _fused.inspect_llvm(_fused.signatures[-1])
    scalar = "float" if dtype == np.float32 else "double"
    # Packed arithmetic on <N x float> (N >= 2) and no calls left but LLVM intrinsics/NRT.
    assert re.search(rf"fdiv (\w+ )*<\d+ x {scalar}>", llvm), "loop was not vectorized"
    calls = set(re.findall(r"call [^@]*@([\w.$]+)\(", llvm))
    runtime = ("_Z", "llvm.", "NRT_", "Py", "numba_", "cfunc")  # the loop itself, wrappers
    leftover = {c for c in calls if "backends7vecmath" in c or not c.startswith(runtime)}
    assert not leftover, f"scalar calls left in the loop: {leftover}"


def test_replacements_cover_prim_templates_and_evaluate():
    replaced = set(vm.REPLACEMENTS.values())
    assert replaced <= set(vm.__all__)
    for key in vm.REPLACEMENTS:
        assert hasattr(math, key.removeprefix("math."))
    used = {}
    for prim in PRIMS.values():
        if isinstance(prim.scalar, str):
            for key in vm.REPLACEMENTS:
                if re.search(rf"\b{re.escape(key)}\(", prim.scalar):
                    used[prim.name] = vm.rewrite(prim.scalar)
    assert {"exp", "log", "log1p", "tanh"} <= set(used)
    assert used["exp"] == "vexp({0})" and vm.rewrite("math.expm1(a)") == "vexpm1(a)"
    assert vm.rewrite("math.sqrt(math.exp(a))") == "math.sqrt(vexp(a))"
    # The rewritten templates, pasted into a generated loop, agree with the prims' impls.
    names = sorted(used)
    body = "\n".join(
        f"        out[{j}, i] = " + used[n].format("x[i]", half="np.float32(0.5)")
        for j, n in enumerate(names)
    )
    src = f"def generated(x, out):\n    for i in range(x.shape[0]):\n{body}\n"
    scope = {name: getattr(vm, name) for name in replaced} | {"np": np}
    exec(src, scope)
    x = np.random.default_rng(0).uniform(0.01, 4, 500).astype(np.float32)
    out = np.empty((len(names), x.size), np.float32)
    njit(scope["generated"])(x, out)
    for j, n in enumerate(names):
        u = _ulp(out[j], PRIMS[n].impl(x))
        assert u.max() <= ULP_NUMPY[np.float32]["v" + n] + NUMPY_SLACK, (n, u.max())


@njit
def _erf_loop(x, out):
    for i in range(x.shape[0]):
        out[i] = verf(x[i])


def test_erf_float32_within_three_ulp_of_correctly_rounded_and_vectorizes():
    scipy_special = pytest.importorskip("scipy.special")
    # every 997th float32 from 0 to inf and every float32 in [0.75, 0.85] (the switch between
    # the two formulas), both signs, and the special values
    x = np.arange(0, 0x7F800000, 997, dtype=np.uint32).view(np.float32)
    around = np.arange(*np.array([0.75, 0.85], np.float32).view(np.uint32)).astype(np.uint32)
    x = np.concatenate([x, around.view(np.float32)])
    x = np.concatenate([x, -x, np.array([np.inf, -np.inf, np.nan, 0.8, -0.8], np.float32)])
    out = np.empty_like(x)
    _erf_loop(x, out)
    want = scipy_special.erf(x.astype(np.float64)).astype(np.float32)
    u = _ulp(out, want)
    assert u.max() <= ULP_NUMPY[np.float32]["verf"], (x[u.argmax()], out[u.argmax()])
    zeros = np.array([0.0, -0.0], np.float32)
    _erf_loop(zeros, out[:2])
    assert out[0] == 0 and out[1] == 0 and np.signbit(out[:2]).tolist() == [False, True]
    llvm = _erf_loop.inspect_llvm(_erf_loop.signatures[0])
    assert re.search(r"fdiv (\w+ )*<\d+ x float>", llvm), "loop was not vectorized"


def test_erf_float64_is_libm():
    x = np.concatenate([np.linspace(-6, 6, 2001), [np.inf, -np.inf, np.nan, -0.0, 1e-300]])
    out = np.empty_like(x)
    _erf_loop(x, out)
    want = np.array([math.erf(v) for v in x])
    assert _ulp(out, want).max() == 0


def test_erf_numpy_twin_is_bit_for_bit_the_loop():
    from jitgrad.ops import loops

    x = np.arange(0, 0x7F800000, 4093, dtype=np.uint32).view(np.float32)
    x = np.concatenate([x, -x, np.array([np.inf, -np.inf, np.nan, -0.0, 0.8], np.float32)])
    out = np.empty_like(x)
    loops.erf_f32(x, out)
    twin = vm.erf32_numpy(x)
    assert np.array_equal(out.view(np.uint32), twin.view(np.uint32))
