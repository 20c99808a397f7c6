"""Tracing pitfalls, pinned: what jitgrad.compile refuses, and what it bakes in on purpose."""

from __future__ import annotations

import numpy as np
import pytest
from test_compile import _compiled_call

import jitgrad as jg


@pytest.mark.parametrize(
    "read",
    [
        lambda t: t.sum().item(),
        lambda t: bool(t.sum() > 0),
        lambda t: t.numpy(),
        lambda t: t.tolist(),
        lambda t: float(t.sum()),
    ],
    ids=["item", "bool", "numpy", "tolist", "float"],
)
def test_data_dependent_python_reads_raise_and_name_the_line(read):
    def f(x):
        y = x * 2
        read(y)  # the offending line
        return y

    cf = jg.compile(f)
    with pytest.raises(jg.TraceError) as info:
        cf(jg.randn(3))
    msg = str(info.value)
    assert 'test_footguns.py", line ' in msg  # the user's line, not jitgrad's
    assert "jitgrad.where" in msg


def test_if_on_a_tensor_suggests_where():
    @jg.compile
    def f(x):
        if x.sum() > 0:
            return x
        return -x

    with pytest.raises(jg.TraceError, match=r"if x.sum\(\) > 0"):
        f(jg.randn(4))


def test_reading_values_of_constants_is_fine():
    @jg.compile
    def f(x):
        n = jg.tensor([1.0, 2.0, 3.0]).sum().item()  # a constant, not data-dependent
        return x * n

    np.testing.assert_array_equal(_compiled_call(f, jg.ones(2)).numpy(), [6.0, 6.0])


def test_python_side_effects_run_only_while_tracing():
    calls = []

    @jg.compile
    def f(x):
        calls.append(1)
        return x + 1.0

    for _ in range(3):
        f(jg.ones(2))
    assert len(calls) == 1


def test_python_int_globals_are_baked_in_but_float_args_are_not():
    scale = {"k": 2}

    @jg.compile
    def f(x, a):
        return x * scale["k"] + a

    x = jg.ones(2)
    assert f(x, 1.0).tolist() == [3.0, 3.0]
    scale["k"] = 10  # Python state read at trace time stays baked in
    assert f(x, 5.0).tolist() == [7.0, 7.0]


def test_using_a_view_after_its_base_was_updated_in_place_raises():
    w = jg.ones(4)

    @jg.compile
    def f(x):
        v = w.view(2, 2)
        w.add_(x)
        return v * 2  # eagerly this sees the update, a replay would not

    with pytest.raises(jg.TraceError, match="view of a tensor was used after"):
        f(jg.ones(4))


def test_state_created_on_the_first_call_is_traced_again():
    state = {}

    @jg.compile
    def f(x):
        if "buf" not in state:
            state["buf"] = x.clone()
        else:
            state["buf"].mul_(0.5).add_(x)
        return state["buf"] * 1.0

    x = jg.ones(3)
    outs = [f(x).tolist()[0] for _ in range(4)]
    assert outs == [1.0, 1.5, 1.75, 1.875]
    assert "warm-up" in f.stats.retrace_reasons[0]


def test_tensors_created_anew_every_call_and_kept_are_refused():
    keep = []

    @jg.compile
    def f(x):
        keep.append(x * 2)
        return x

    with pytest.raises(jg.TraceError, match="outlive each call"):
        for _ in range(4):
            f(jg.ones(2))


def test_random_numbers_are_fresh_each_call_and_reproducible():
    @jg.compile
    def noisy(x):
        return x + jg.rand(4)

    jg.manual_seed(0)
    a = [noisy(jg.zeros(4)).numpy() for _ in range(3)]
    jg.manual_seed(0)
    b = [jg.zeros(4) + jg.rand(4) for _ in range(3)]
    assert not np.array_equal(a[1], a[2])
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v.numpy())


def test_compiled_function_returning_non_tensors_is_refused():
    with pytest.raises(jg.TraceError, match="must return tensors"):
        jg.compile(lambda x: 3)(jg.ones(1))


def test_nested_compiled_calls_are_refused():
    inner = jg.compile(lambda x: x + 1.0)
    outer = jg.compile(lambda x: inner(x) * 2.0)
    with pytest.raises(jg.TraceError, match="nested"):
        outer(jg.ones(2))


def test_inf_and_nan_are_computed_silently_as_pytorch():
    # log(0), 0/0 and a softmax over a row of -inf give inf/nan without NumPy's warnings, under
    # the filters a plain script has plus the one jitgrad installs at import; NumPy's own
    # warnings in the caller's code stay
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()  # (pytest's own filters replace those installed at import)
        warnings.simplefilter("default")
        warnings.filterwarnings(**jg._QUIET_FLOATING_POINT)  # as ``import jitgrad`` does
        x = jg.tensor([0.0, -1.0, 1.0])
        out = [jg.log(x), x / 0, jg.softmax(jg.full((1, 3), float("-inf")), 1)]
        np.log(np.zeros(1))
    assert np.isneginf(out[0].numpy()[0]) and np.isnan(out[2].numpy()).all()
    assert [str(w.message) for w in caught] == ["divide by zero encountered in log"], caught
