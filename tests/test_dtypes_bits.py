"""The 8- and 16-bit dtypes (int8 uint8 int16 float16 bfloat16) and the bitwise ops: PyTorch's
type promotion, factories, casts and their names, 16-bit float values and gradients, the bit
operators with Python numbers on either side and in place, error wording, and compiled use."""

import itertools
import operator

import ml_dtypes
import numpy as np
import pytest

import jitgrad as jg

NEW = ["int8", "uint8", "int16", "float16", "bfloat16"]
ALL = NEW + ["bool", "int32", "int64", "float32", "float64"]
BF16 = np.dtype(ml_dtypes.bfloat16)


def _np(name):
    return BF16 if name == "bfloat16" else np.dtype(name)


def _torch():
    return pytest.importorskip("torch")


def _tdtype(torch, name):
    return getattr(torch, name)


def _values(x):
    """jitgrad's values as float64 (bfloat16 included)."""
    return np.asarray(x.detach().numpy() if isinstance(x, jg.Tensor) else x).astype(np.float64)


# -- dtypes ----------------------------------------------------------------------------------------


def test_dtype_objects_and_aliases():
    assert jg.half is jg.float16 and jg.short is jg.int16
    for name in NEW:
        d = getattr(jg, name)
        assert d.name == name and repr(d) == f"jitgrad.{name}"
        assert d.itemsize == _np(name).itemsize
    assert jg.float16.is_floating_point and jg.bfloat16.is_floating_point
    assert not jg.int8.is_floating_point and not jg.uint8.is_floating_point
    assert jg.int8.is_signed and not jg.uint8.is_signed and not jg.bool.is_signed
    assert jg.bfloat16.is_signed and not jg.bfloat16.is_complex
    assert jg.is_floating_point(jg.ones(1, dtype=jg.bfloat16))
    assert not jg.is_floating_point(jg.ones(1, dtype=jg.int8))
    assert jg.ones(1, dtype=jg.int8).is_signed() and not jg.ones(1, dtype=jg.uint8).is_signed()


# promote_types written out (PyTorch's table)
PROMOTED = {
    ("float16", "float32"): "float32",
    ("float16", "bfloat16"): "float32",
    ("bfloat16", "float64"): "float64",
    ("int8", "uint8"): "int16",
    ("uint8", "int16"): "int16",
    ("uint8", "int32"): "int32",
    ("int16", "int8"): "int16",
    ("bool", "uint8"): "uint8",
    ("int8", "float16"): "float16",
    ("int64", "bfloat16"): "bfloat16",
    ("uint8", "uint8"): "uint8",
}


@pytest.mark.parametrize(("a", "b"), sorted(PROMOTED))
def test_promotion_of_tensors_written_out(a, b):
    x = jg.ones(2, dtype=getattr(jg, "bool_" if a == "bool" else a))
    y = jg.ones(2, dtype=getattr(jg, "bool_" if b == "bool" else b))
    assert (x + y).dtype.name == PROMOTED[a, b]
    assert (y * x).dtype.name == PROMOTED[a, b]


@pytest.mark.torch
@pytest.mark.parametrize(("a", "b"), list(itertools.product(ALL, ALL)))
def test_promotion_agrees_with_torch(a, b):
    torch = _torch()
    want = torch.promote_types(_tdtype(torch, a), _tdtype(torch, b))
    got = jg.promote_types(getattr(jg, "bool_" if a == "bool" else a), b)
    assert got.name == str(want).split(".")[-1]
    jd = {n: getattr(jg, "bool_" if n == "bool" else n) for n in (a, b)}
    got = jg.where(jg.tensor([True, False]), jg.zeros(2, dtype=jd[a]), jg.zeros(2, dtype=jd[b]))
    assert str(got.dtype).split(".")[-1] == str(want).split(".")[-1]


@pytest.mark.torch
@pytest.mark.parametrize("name", NEW + ["int32", "int64", "bool"])
@pytest.mark.parametrize(
    "other", [1, 2.5, True, ("zero-dim", "float64"), ("zero-dim", "int64"), ("zero-dim", "uint8")]
)
def test_promotion_with_numbers_and_zero_dim_tensors_agrees_with_torch(name, other):
    torch = _torch()
    jd = getattr(jg, "bool_" if name == "bool" else name)
    x, t = jg.ones(3, dtype=jd), torch.ones(3, dtype=_tdtype(torch, name))
    if isinstance(other, tuple):
        jo = jg.tensor(1, dtype=getattr(jg, other[1]))
        to = torch.tensor(1, dtype=_tdtype(torch, other[1]))
    else:
        jo = to = other
    for op in (operator.add, operator.mul):
        for j, tt in ((op(x, jo), op(t, to)), (op(jo, x), op(to, t))):
            assert str(j.dtype).split(".")[-1] == str(tt.dtype).split(".")[-1]


# -- factories and casts -------------------------------------------------------------------------


@pytest.mark.torch
@pytest.mark.parametrize("name", NEW)
def test_factories_take_the_new_dtypes(name):
    torch = _torch()
    jd, td = getattr(jg, name), _tdtype(torch, name)
    pairs = [
        (jg.zeros(2, 3, dtype=jd), torch.zeros(2, 3, dtype=td)),
        (jg.ones((2,), dtype=jd), torch.ones((2,), dtype=td)),
        (jg.full((2, 2), 7, dtype=jd), torch.full((2, 2), 7, dtype=td)),
        (jg.arange(5, dtype=jd), torch.arange(5, dtype=td)),
        (jg.tensor([1, 2, 3], dtype=jd), torch.tensor([1, 2, 3], dtype=td)),
        (jg.zeros_like(jg.ones(2), dtype=jd), torch.zeros_like(torch.ones(2), dtype=td)),
    ]
    for j, t in pairs:
        assert j.dtype is jd and tuple(j.shape) == tuple(t.shape)
        np.testing.assert_array_equal(_values(j), t.double().numpy())


def test_numpy_arrays_of_the_new_dtypes_keep_their_dtype():
    for name in NEW:
        arr = np.arange(4).astype(_np(name))
        assert jg.tensor(arr).dtype.name == name
        assert jg.from_numpy(arr).dtype.name == name
        assert jg.as_tensor(arr).numpy().dtype == _np(name)


@pytest.mark.torch
def test_casting_float64_values_agrees_with_torch():
    torch = _torch()
    rng = np.random.default_rng(0)
    # (many values: PyTorch rounds float64 to float32 first, which differs from rounding
    # directly in about one case in 20000)
    x = rng.standard_normal(1 << 17) * 10.0 ** rng.integers(-6, 6, 1 << 17)
    x = np.concatenate([x, [1e6, 7e4]])
    for name in ("float16", "bfloat16"):
        j = jg.tensor(x).to(getattr(jg, name))
        t = torch.tensor(x).to(_tdtype(torch, name))
        np.testing.assert_array_equal(_values(j), t.double().numpy())
        # and from float32
        j = jg.tensor(x, dtype=jg.float32).to(getattr(jg, name))
        t = torch.tensor(x, dtype=torch.float32).to(_tdtype(torch, name))
        np.testing.assert_array_equal(_values(j), t.double().numpy())
    for name in ("int8", "uint8", "int16"):
        ints = rng.integers(-1000, 1000, 100)
        j = jg.tensor(ints).to(getattr(jg, name))
        t = torch.tensor(ints).to(_tdtype(torch, name))
        np.testing.assert_array_equal(j.numpy(), t.numpy())  # wrap around


CAST_METHODS = {
    "half": ("float16", "Half"),
    "bfloat16": ("bfloat16", "BFloat16"),
    "float": ("float32", "Float"),
    "double": ("float64", "Double"),
    "short": ("int16", "Short"),
    "char": ("int8", "Char"),
    "byte": ("uint8", "Byte"),
    "int": ("int32", "Int"),
    "long": ("int64", "Long"),
    "bool": ("bool", "Bool"),
}


@pytest.mark.parametrize("method", sorted(CAST_METHODS))
def test_cast_methods_and_type_names(method):
    name, kind = CAST_METHODS[method]
    x = jg.tensor([1.0, 2.0, 0.0])
    y = getattr(x, method)()
    assert y.dtype.name == name
    assert y.type() == f"jitgrad.{kind}Tensor"
    assert x.type(f"jitgrad.{kind}Tensor").dtype.name == name
    assert x.type(f"torch.{kind}Tensor").dtype.name == name  # code written for torch
    assert x.type(y.dtype).dtype is y.dtype
    assert x.to(y.dtype).dtype is y.dtype
    assert x.to(name).dtype is y.dtype
    assert y.is_floating_point() == (name in ("float16", "bfloat16", "float32", "float64"))


@pytest.mark.torch
def test_type_names_agree_with_torch():
    torch = _torch()
    for method in CAST_METHODS:
        want = getattr(torch.ones(2), method)().type()
        assert getattr(jg.ones(2), method)().type() == want.replace("torch.", "jitgrad.")


def test_type_rejects_unknown_names():
    x = jg.ones(2)
    for bad in ("foo", "torch.FooTensor", "float16"):
        with pytest.raises(ValueError, match="invalid type"):
            x.type(bad)


def test_repr_shows_the_dtype():
    assert repr(jg.tensor([1.5, 2.0], dtype=jg.float16)) == (
        "tensor([1.5000, 2.0000], dtype=jitgrad.float16)"
    )
    assert repr(jg.tensor([1.1, 2.3], dtype=jg.bfloat16)) == (
        "tensor([1.1016, 2.2969], dtype=jitgrad.bfloat16)"
    )
    assert repr(jg.tensor([1, 2], dtype=jg.uint8)) == "tensor([1, 2], dtype=jitgrad.uint8)"
    assert jg.tensor([1.1], dtype=jg.bfloat16).item() == 1.1015625


def test_inplace_writes_follow_the_category_rule():
    x = jg.tensor([1, 2], dtype=jg.int8)
    x += jg.tensor([300, 1])  # an integer result is written back, wrapping around
    np.testing.assert_array_equal(x.numpy(), np.array([301, 3]).astype(np.int8))
    h = jg.ones(2, dtype=jg.float16)
    h += jg.tensor([0.1, 0.2])  # float32 into float16
    np.testing.assert_array_equal(
        h.numpy(), (np.float32([1, 1]) + np.float32([0.1, 0.2])).astype(np.float16)
    )
    with pytest.raises(
        RuntimeError, match="result type Float can't be cast to the desired output type Char"
    ):
        x += jg.ones(2)


# -- 16-bit float values and gradients ---------------------------------------------------------

# ops PyTorch computes in float32 and rounds once; so do these
EXACT = {
    "add": lambda L, a, b: a + 1.5,
    "mul": lambda L, a, b: a * b,
    "div": lambda L, a, b: a / 3,
    "exp": lambda L, a, b: a.exp(),
    "tanh": lambda L, a, b: a.tanh(),
    "sigmoid": lambda L, a, b: L.sigmoid(a),
    "erf": lambda L, a, b: L.erf(a),
    "sqrt": lambda L, a, b: a.abs().sqrt(),
    "relu": lambda L, a, b: L.relu(a),
    "sum": lambda L, a, b: a.sum(),
    "sum_dim": lambda L, a, b: a.sum(0),
    "mean": lambda L, a, b: a.mean(1),
    "cumsum": lambda L, a, b: a.cumsum(1),
    "max": lambda L, a, b: a.max(),
    "matmul": lambda L, a, b: a @ b.T,
    "to_float32": lambda L, a, b: a.float() * 3,
}


@pytest.mark.torch
@pytest.mark.parametrize("half", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", sorted(EXACT))
def test_half_precision_values_agree_with_torch_bit_for_bit(half, name):
    torch = _torch()
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((8, 16)), rng.standard_normal((8, 16))
    fn = EXACT[name]
    j = fn(jg, jg.tensor(x, dtype=getattr(jg, half)), jg.tensor(w, dtype=getattr(jg, half)))
    t = fn(
        torch,
        torch.tensor(x, dtype=_tdtype(torch, half)),
        torch.tensor(w, dtype=_tdtype(torch, half)),
    )
    assert str(j.dtype).split(".")[-1] == str(t.dtype).split(".")[-1]
    np.testing.assert_array_equal(_values(j), t.double().numpy())


# PyTorch's CPU mul and div read a number (or a rank-0 tensor of another dtype) as a float32
# scalar; its other kernels round the number to the tensor's dtype first
WITH_NUMBERS = {
    "mul": lambda L, a: a * 1.1,
    "rmul": lambda L, a: 1.1 * a,
    "div": lambda L, a: a / 0.7,
    "mul_zero_dim": lambda L, a: a * L.tensor(1.1),
    "mul_zero_dim_float64": lambda L, a: a * L.tensor(1.1, dtype=L.float64),
    "mul_int": lambda L, a: a * 4097,
    "add": lambda L, a: a + 0.1,
    "rsub": lambda L, a: 0.3 - a,
    "pow": lambda L, a: a.abs() ** 0.3,
    "lt": lambda L, a: a < 0.1,
    "eq": lambda L, a: a == 0.1,
    "maximum": lambda L, a: L.maximum(a, L.tensor(0.1)),
    "clamp": lambda L, a: a.clamp(-0.3, 0.3),
    "remainder": lambda L, a: L.remainder(a, 0.3),
}


@pytest.mark.torch
@pytest.mark.parametrize("half", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", sorted(WITH_NUMBERS))
def test_half_precision_with_numbers_agrees_with_torch_bit_for_bit(half, name):
    torch = _torch()
    x = np.random.default_rng(7).standard_normal(4096).astype(np.float32)
    j = WITH_NUMBERS[name](jg, jg.tensor(x).to(getattr(jg, half)))
    t = WITH_NUMBERS[name](torch, torch.tensor(x).to(_tdtype(torch, half)))
    assert str(j.dtype).split(".")[-1] == str(t.dtype).split(".")[-1]
    np.testing.assert_array_equal(_values(j), t.double().numpy())


@pytest.mark.torch
@pytest.mark.parametrize("half", ["float16", "bfloat16"])
def test_gradients_flow_through_half_precision(half):
    torch = _torch()
    rng = np.random.default_rng(1)
    xv, wv = rng.standard_normal((4, 3)), rng.standard_normal((3, 2))

    def run(L, dt):
        x = L.tensor(xv, dtype=dt, requires_grad=True)
        w = L.tensor(wv, dtype=dt, requires_grad=True)
        loss = (L.tanh(x @ w) * 2.0 + x.sum()).sum()
        loss.backward()
        return loss, x.grad, w.grad

    got = run(jg, getattr(jg, half))
    want = run(torch, _tdtype(torch, half))
    for j, t in zip(got, want):
        assert j.dtype is getattr(jg, half)
        np.testing.assert_allclose(_values(j), t.detach().double().numpy(), rtol=2e-2, atol=2e-2)


def test_gradient_of_a_cast_comes_back_in_the_source_dtype():
    x = jg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x.half() * x.half()).sum().backward()
    assert x.grad.dtype is jg.float32
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0, 6.0])
    h = jg.tensor([1.0, 2.0], dtype=jg.bfloat16, requires_grad=True)
    (h.float() * 3).sum().backward()
    assert h.grad.dtype is jg.bfloat16
    np.testing.assert_array_equal(_values(h.grad), [3.0, 3.0])


def test_integer_dtypes_never_require_grad():
    for d in (jg.int8, jg.uint8, jg.int16):
        with pytest.raises(RuntimeError, match="only Tensors of floating point"):
            jg.ones(2, dtype=d).requires_grad_()
    x = jg.ones(2, requires_grad=True)
    assert not x.char().requires_grad


# -- bitwise ops ---------------------------------------------------------------------------------

INTS = ["int8", "uint8", "int16", "int32", "int64"]
BINARY = {
    "bitwise_and": operator.and_,
    "bitwise_or": operator.or_,
    "bitwise_xor": operator.xor,
    "bitwise_left_shift": operator.lshift,
    "bitwise_right_shift": operator.rshift,
}
INPLACE = {
    "bitwise_and": operator.iand,
    "bitwise_or": operator.ior,
    "bitwise_xor": operator.ixor,
    "bitwise_left_shift": operator.ilshift,
    "bitwise_right_shift": operator.irshift,
}


def _draw(name, seed, shift=False):
    rng = np.random.default_rng(seed)
    if name == "bool":
        return rng.random((3, 4)) < 0.5
    lo, hi = (-3, 70) if shift else (-200, 200)
    return rng.integers(lo, hi, (3, 4)).astype(name)


def _shift_ref(x, s, left):
    """PyTorch's shifts written out on Python integers, wrapped to the promoted dtype."""
    dt = np.result_type(x, s)
    bits = 8 * dt.itemsize
    out = []
    for a, b in zip(*[v.astype(np.int64).ravel() for v in np.broadcast_arrays(x, s)]):
        a, b = int(a), int(b)
        if left:
            v = a << b if 0 <= b < bits else 0
        else:
            v = a >> b if 0 <= b < bits else (-1 if a < 0 else 0)
        out.append((v + 2**63) % 2**64 - 2**63)  # wrapped to int64, then to dt
    shape = np.broadcast_shapes(x.shape, s.shape)
    return np.array(out, np.int64).astype(dt).reshape(shape)


@pytest.mark.parametrize("a", INTS)
@pytest.mark.parametrize("b", INTS)
@pytest.mark.parametrize("name", sorted(BINARY))
def test_bitwise_ops_match_numpy_in_every_pair_of_integer_dtypes(name, a, b):
    shift = "shift" in name
    x, y = _draw(a, 0), _draw(b, 1, shift)
    got = getattr(jg, name)(jg.tensor(x), jg.tensor(y))
    if shift:
        want = _shift_ref(x, y, "left" in name)
    else:
        want = getattr(np, name)(x, y)
    assert got.dtype.name == np.result_type(x, y).name
    np.testing.assert_array_equal(got.numpy(), want)
    # the operator, the method and the in-place method
    np.testing.assert_array_equal(BINARY[name](jg.tensor(x), jg.tensor(y)).numpy(), want)
    np.testing.assert_array_equal(getattr(jg.tensor(x), name)(jg.tensor(y)).numpy(), want)
    t = jg.tensor(x)
    if np.result_type(x, y) == x.dtype:
        INPLACE[name](t, jg.tensor(y))
        np.testing.assert_array_equal(t.numpy(), want)
        assert t.dtype.name == a


@pytest.mark.torch
@pytest.mark.parametrize("a", INTS + ["bool"])
@pytest.mark.parametrize("b", INTS + ["bool", 3, -2, 70, True])
@pytest.mark.parametrize("name", sorted(BINARY))
def test_bitwise_ops_agree_with_torch_including_python_numbers(name, a, b):
    torch = _torch()
    x = _draw(a, 0)
    y = _draw(b, 1, "shift" in name) if isinstance(b, str) else b

    def run(L):
        xs = L.tensor(x)
        ys = L.tensor(y) if isinstance(y, np.ndarray) else y
        outs = []
        for f in (
            lambda: getattr(L, name)(xs, ys),
            lambda: BINARY[name](xs, ys),
            lambda: BINARY[name](ys, xs),  # reflected (or both tensors swapped)
        ):
            try:
                outs.append(f())
            except (RuntimeError, TypeError, NotImplementedError) as e:
                outs.append(type(e))
        return outs

    for j, t in zip(run(jg), run(torch)):
        if isinstance(t, type):
            assert j is t
            continue
        assert str(j.dtype).split(".")[-1] == str(t.dtype).split(".")[-1]
        np.testing.assert_array_equal(j.numpy(), t.numpy())


@pytest.mark.torch
@pytest.mark.parametrize("name", INTS + ["bool"])
def test_bitwise_not_and_invert_agree_with_torch(name):
    torch = _torch()
    x = _draw(name, 2)
    for j, t in (
        (jg.bitwise_not(jg.tensor(x)), torch.bitwise_not(torch.tensor(x))),
        (~jg.tensor(x), ~torch.tensor(x)),
    ):
        assert str(j.dtype).split(".")[-1] == str(t.dtype).split(".")[-1]
        np.testing.assert_array_equal(j.numpy(), t.numpy())
    y = jg.tensor(x)
    y.bitwise_not_()
    np.testing.assert_array_equal(y.numpy(), np.invert(x))


def test_shifts_out_of_range_follow_pytorch():
    b = jg.tensor([1, -1])
    np.testing.assert_array_equal((b << 64).numpy(), [0, 0])
    np.testing.assert_array_equal((b << 63).numpy(), [-(2**63), -(2**63)])
    np.testing.assert_array_equal((b >> 64).numpy(), [0, -1])
    np.testing.assert_array_equal((b << -1).numpy(), [0, 0])
    np.testing.assert_array_equal((b >> -1).numpy(), [0, -1])
    u = jg.tensor([200, 3], dtype=jg.uint8)
    np.testing.assert_array_equal((u >> 8).numpy(), [0, 0])
    np.testing.assert_array_equal((u << 1).numpy(), [144, 6])
    i8 = jg.tensor([5, -3, 7], dtype=jg.int8)
    np.testing.assert_array_equal((i8 << 7).numpy(), [-128, -128, -128])
    np.testing.assert_array_equal((1 << i8.abs()).numpy(), [32, 8, -128])


def test_bool_tensors_take_the_logical_meaning():
    m = jg.tensor([True, False, True])
    n = jg.tensor([True, True, False])
    assert (m & n).dtype is jg.bool and (m & n).tolist() == [True, False, False]
    assert (m | n).tolist() == [True, True, True] and (m ^ n).tolist() == [False, True, True]
    assert (~m).tolist() == [False, True, False]
    assert (m & True).dtype is jg.bool
    assert (m | 1).dtype is jg.int64  # a Python int outranks bool
    m &= n
    assert m.tolist() == [True, False, False]
    with pytest.raises(
        RuntimeError, match="result type Long can't be cast to the desired output type Bool"
    ):
        m |= jg.tensor([1, 2, 3])
    assert m.tolist() == [True, False, False]  # left as it was


FLOAT_ERRORS = [
    (lambda f: f & f, NotImplementedError, "\"bitwise_and_cpu\" not implemented for 'Float'"),
    (lambda f: 1 | f, NotImplementedError, "\"bitwise_or_cpu\" not implemented for 'Float'"),
    (lambda f: f ^ 1, NotImplementedError, "\"bitwise_xor_cpu\" not implemented for 'Float'"),
    (lambda f: f << 1, NotImplementedError, "\"lshift_cpu\" not implemented for 'Float'"),
    (lambda f: 1 >> f, NotImplementedError, "\"rshift_cpu\" not implemented for 'Float'"),
    (lambda f: f.double() >> 1, NotImplementedError, "not implemented for 'Double'"),
    (lambda f: f.half() & 1, NotImplementedError, "not implemented for 'Half'"),
    (lambda f: jg.bitwise_not(f), NotImplementedError, '"bitwise_not_cpu" not implemented'),
    (lambda f: ~f, TypeError, r"~ \(operator.invert\) is only implemented on integer and Boolean"),
    (lambda f: f.long() & 1.5, NotImplementedError, "not implemented for 'Float'"),
    (lambda f: f.bool() << True, NotImplementedError, "\"lshift_cpu\" not implemented for 'Bool'"),
]


@pytest.mark.parametrize(("fn", "exc", "match"), FLOAT_ERRORS)
def test_bitwise_ops_refuse_floats_with_pytorchs_errors(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn(jg.ones(3))


def test_inplace_bitwise_on_a_float_tensor_leaves_it_unchanged():
    x = jg.tensor([1.0, 2.0])
    with pytest.raises(NotImplementedError):
        x &= 1
    assert x.tolist() == [1.0, 2.0] and x._version == 0


def test_bitwise_ops_are_not_differentiable():
    from jitgrad.ops.registry import PRIMS

    for name in ("bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not"):
        assert not PRIMS[name].differentiable
    assert not PRIMS["bitwise_left_shift"].differentiable
    assert not PRIMS["bitwise_right_shift"].differentiable
    x = jg.ones(2, requires_grad=True)
    y = x.long() & 1
    assert y.grad_fn is None and not y.requires_grad


# -- compiled --------------------------------------------------------------------------------


def _bits(a, s, m):
    return [
        a & s,
        a | 5,
        3 ^ a,
        ~a,
        a << s,
        a >> s,
        2 << s,
        100 >> s,
        (m & (a > 0)) | ~m,
        m ^ True,
        (a + a) > 0,  # narrow integers wrap around inside a fused loop too
    ]


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("name", INTS)
def test_compiled_bitwise_ops_match_eager(name):
    rng = np.random.default_rng(3)
    a = jg.tensor(rng.integers(-128, 128, (5, 6)).astype(name))
    s = jg.tensor(rng.integers(-3, 70, (5, 6)).astype(name))
    m = jg.tensor(rng.random((5, 6)) < 0.5)
    fn = jg.compile(_bits, backend="numba")
    got, want = fn(a, s, m), _bits(a, s, m)
    for g, w in zip(got, want):
        assert g.dtype is w.dtype
        np.testing.assert_array_equal(g.numpy(), w.numpy())
    # new values, same compiled code
    a2 = jg.tensor(rng.integers(-128, 128, (5, 6)).astype(name))
    for g, w in zip(fn(a2, s, m), _bits(a2, s, m)):
        np.testing.assert_array_equal(g.numpy(), w.numpy())
    assert fn.stats.traces == 1


@pytest.mark.filterwarnings("error")
def test_compiled_int8_arithmetic_and_in_place_bit_ops():
    def step(x, y):
        x &= y
        x <<= 1
        return x * 3 - y, (x.long() + 1).sum()

    x = jg.tensor(np.arange(-6, 6).astype(np.int8))
    y = jg.tensor(np.arange(12).astype(np.int8) * 11)
    x2 = x.clone()
    got = jg.compile(step, backend="numba")(x, y)
    want = step(x2, y)
    np.testing.assert_array_equal(x.numpy(), x2.numpy())
    for g, w in zip(got, want):
        assert g.dtype is w.dtype
        np.testing.assert_array_equal(g.numpy(), w.numpy())


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
def test_numba_backend_refuses_half_precision_tapes_clearly(half, monkeypatch):
    def f(x):
        return (x * 2).exp().sum()

    x = jg.tensor([0.5, 1.0, 1.5], dtype=getattr(jg, half))
    with pytest.raises(RuntimeError, match=f"holds jitgrad.{half} values"):  # strict (tests)
        jg.compile(f, backend="numba")(x)
    monkeypatch.delenv("JITGRAD_STRICT_BACKENDS")  # as a user runs it: a warning
    with pytest.warns(RuntimeWarning, match=f"holds jitgrad.{half} values"):
        got = jg.compile(f, backend="numba")(x)
    assert got.dtype.name == half
    np.testing.assert_array_equal(_values(got), _values(f(x)))  # the interpreter ran it


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("half", ["float16", "bfloat16"])
def test_interpreter_runs_half_precision_like_eager(half):
    def f(x, w):
        y = jg.tanh(x @ w) + 1.5
        y.sum().backward()
        return y, x.grad

    rng = np.random.default_rng(4)
    xv, wv = rng.standard_normal((4, 3)), rng.standard_normal((3, 2))
    d = getattr(jg, half)
    x1, w1 = jg.tensor(xv, dtype=d, requires_grad=True), jg.tensor(wv, dtype=d)
    x2, w2 = jg.tensor(xv, dtype=d, requires_grad=True), jg.tensor(wv, dtype=d)
    got = jg.compile(f, backend="interpreter")(x1, w1)
    want = f(x2, w2)
    for g, w in zip(got, want):
        assert g.dtype is d
        assert g.detach().numpy().tobytes() == w.detach().numpy().tobytes()


def test_save_and_load_keep_the_new_dtypes(tmp_path):
    state = {name: jg.tensor([1.1, 2.2, -3.0]).to(getattr(jg, name)) for name in NEW}
    jg.save(state, tmp_path / "s.pt")
    back = jg.load(tmp_path / "s.pt")
    for name, t in state.items():
        assert back[name].dtype is t.dtype
        assert back[name].numpy().tobytes() == t.numpy().tobytes()


@pytest.mark.torch
@pytest.mark.parametrize("half", ["float16", "bfloat16"])
@pytest.mark.parametrize("opt", ["SGD", "Adam"])
def test_optimizers_update_half_precision_parameters(half, opt):
    torch = _torch()
    out = []
    for L in (jg, torch):
        w = L.tensor(np.linspace(-1, 1, 6), dtype=getattr(L, half), requires_grad=True)
        o = getattr(L.optim, opt)([w], lr=0.1, **({"momentum": 0.9} if opt == "SGD" else {}))
        for _ in range(3):
            o.zero_grad()
            (w * w).sum().backward()
            o.step()
        assert str(w.dtype).endswith(half)
        out.append(w.detach().float().numpy())
    np.testing.assert_allclose(out[0], out[1], atol=1e-2)


@pytest.mark.torch
@pytest.mark.parametrize("half", ["float16", "bfloat16"])
def test_conv_and_pooling_in_half_precision_agree_with_torch(half):
    torch = _torch()
    rng = np.random.default_rng(6)
    xv, wv = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    for L in (jg, torch):
        d = getattr(L, half)
        x, w = L.tensor(xv, dtype=d), L.tensor(wv, dtype=d)
        out = [L.nn.functional.conv2d(x, w, padding=1), L.nn.functional.max_pool2d(x, 2)]
        if L is jg:
            got = out
        else:
            want = out
    for j, t in zip(got, want):
        assert str(j.dtype).split(".")[-1] == half
        np.testing.assert_allclose(_values(j), t.double().numpy(), rtol=1e-2, atol=2e-2)


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
def test_linalg_refuses_low_precision_as_pytorch(half):
    a = jg.eye(3, dtype=getattr(jg, half))
    kind = "Half" if half == "float16" else "BFloat16"
    with pytest.raises(
        RuntimeError, match=f"linalg.inv: Low precision dtypes not supported. Got {kind}"
    ):
        jg.linalg.inv(a)
