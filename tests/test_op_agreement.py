"""Every op of the op table against its PyTorch counterpart, on its spec's float64 inputs:
values, dtypes and shapes of the results, and gradients. Skipped when torch is not installed
(it is never a dependency); a spec names its counterpart with ``torch=`` (see ``ops.spec``)."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jitgrad as jg  # noqa: E402
from jitgrad.ops import OPS  # noqa: E402
from jitgrad.ops.spec import Arg  # noqa: E402


def _torch_fn(entry):
    path = entry.spec.torch
    if path is False:
        return None
    if path is True:
        path = entry.name if entry.namespace == "jitgrad" else f"{entry.namespace}.{entry.name}"
    try:
        return functools.reduce(getattr, path.split("."), torch)
    except AttributeError:
        return None


ENTRIES = {
    key: (entry, fn)
    for key, entry in OPS.items()
    if entry.spec is not None and entry.spec.ref is not None
    for fn in [_torch_fn(entry)]
    if fn is not None
}


def _flat(out) -> list:
    if isinstance(out, (tuple, list)):
        return [o for x in out for o in _flat(x)]
    return [out]


def _run(lib, fn, entry, values):
    """Call ``fn`` (jitgrad's or torch's) on ``values``; returns (inputs, flat outputs)."""
    spec = entry.spec
    ins = []
    for k, (a, v) in enumerate(zip(spec.args, values)):
        if isinstance(a, Arg):
            t = lib.tensor(v)
            if k in spec.differentiable:
                t.requires_grad_(True)
            ins.append(t)
        else:
            ins.append(v)
    call = spec.call or (lambda f, *xs, **kw: f(*xs, **kw))
    with warnings.catch_warnings():
        # (torch.cholesky and torch.qr warn that they are deprecated: the names are still ops)
        warnings.filterwarnings("ignore", r"torch\.\w+ is deprecated", UserWarning)
        return ins, _flat(call(fn, *ins, **spec.params))


# Known disagreements, each to be fixed (strict: the test fails once one agrees)
KNOWN: dict = {
    # PyTorch's backward multiplies by float32's 1/6 in every dtype (4e-8 off in float64)
    "nn.functional.hardsigmoid": "torch's float64 hardsigmoid gradient uses float32's 1/6",
}


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(k, marks=pytest.mark.xfail(reason=KNOWN[k], strict=True)) if k in KNOWN else k
        for k in sorted(ENTRIES)
    ],
)
def test_op_agrees_with_torch(key):
    entry, torch_fn = ENTRIES[key]
    spec = entry.spec
    values = spec.draw(seed=3)
    j_in, j_out = _run(jg, entry.fn, entry, values)
    t_in, t_out = _run(torch, torch_fn, entry, values)
    assert len(j_out) == len(t_out), key
    for j, t in zip(j_out, t_out):
        if not isinstance(t, torch.Tensor):
            assert j == pytest.approx(t, rel=1e-10), key
            continue
        assert tuple(j.shape) == tuple(t.shape), key
        assert str(j.dtype).split(".")[-1] == str(t.dtype).split(".")[-1], key
        np.testing.assert_allclose(
            j.detach().numpy(), t.detach().numpy(), rtol=1e-9, atol=1e-12, err_msg=key
        )
    if not spec.differentiable:
        return
    rng = np.random.default_rng(5)
    pairs = [(j, t) for j, t in zip(j_out, t_out) if isinstance(t, torch.Tensor)]
    pairs = [(j, t) for j, t in pairs if t.dtype.is_floating_point and t.requires_grad]
    cots = [rng.standard_normal(t.shape) for _, t in pairs]
    wanted = [k for k, a in enumerate(spec.args) if isinstance(a, Arg)]
    j_wrt = [
        x
        for k, x in zip(wanted, (i for i in j_in if isinstance(i, jg.Tensor)))
        if k in spec.differentiable
    ]
    t_wrt = [
        x
        for k, x in zip(wanted, (i for i in t_in if isinstance(i, torch.Tensor)))
        if k in spec.differentiable
    ]
    j_g = jg.autograd.grad(
        [j for j, _ in pairs], j_wrt, [jg.tensor(c) for c in cots], allow_unused=True
    )
    t_g = torch.autograd.grad(
        [t for _, t in pairs], t_wrt, [torch.tensor(c) for c in cots], allow_unused=True
    )
    for a, b in zip(j_g, t_g):
        assert (a is None) == (b is None), key
        if a is not None:
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-8, atol=1e-10, err_msg=key)
