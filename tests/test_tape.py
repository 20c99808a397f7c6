"""The tape IR: tracing records everything, prints readably, verifies, draws; passes preserve
meaning (checked by evaluating before and after with the reference interpreter)."""

from __future__ import annotations

import numpy as np
import pytest

import jitgrad as jg
from jitgrad.backends.interpreter import evaluate
from jitgrad.ir import Tracer, cse, dce, fold_constants, simplify, tracing
from jitgrad.ir.tape import Binding, Eqn, Tape, Var
from jitgrad.ops import PRIMS


def trace(fn, *args):
    tracer = Tracer(fn.__name__)
    with tracing(tracer):
        for i, a in enumerate(args):
            tracer.add_input(a, Binding("arg", key=i, name=f"x{i}"))
        out = fn(*args)
        tracer.tape.outputs = [
            tracer.var_of(o) for o in (out if isinstance(out, tuple) else (out,))
        ]
        tracer.tape.writes = tracer.state_writes() + tracer.grad_writes()
    return tracer.tape


def run(tape, *arrays):
    env = evaluate(tape, list(arrays))
    return [env[v] for v in tape.outputs]


def test_trace_prints_inputs_captures_equations_writes_and_return():
    w = jg.randn(4, 3, requires_grad=True)

    def step(x):
        loss = (x @ w).tanh().sum()
        loss.backward()
        with jg.no_grad():
            w.sub_(0.1 * w.grad)
        return loss

    x = jg.randn(2, 4)
    tape = trace(step, x)
    text = str(tape)
    assert text.splitlines()[0].startswith("tape step(x0: f32[2,4]) captures ")
    assert "= matmul x0" in text and "= tanh" in text
    assert "write " in text and ".grad <- " in text
    assert text.splitlines()[-1].startswith("  return %")
    tape.verify()
    dot = tape.to_dot()
    assert dot.startswith('digraph "step"') and "->" in dot and "matmul" in dot


def test_verify_rejects_malformed_tapes():
    f32 = jg.float32
    a, b, c = Var(0, (2,), f32), Var(1, (2,), f32), Var(2, (3,), f32)
    add = PRIMS["add"]
    good = Tape(
        inputs=[a], bindings={a: Binding("arg", 0)}, eqns=[Eqn(add, (a, a), (), b)], outputs=[b]
    )
    good.verify()
    use_before_def = good.copy(eqns=[Eqn(add, (a, c), (), b)])
    with pytest.raises(ValueError, match="before it is defined"):
        use_before_def.verify()
    wrong_type = good.copy(eqns=[Eqn(add, (a, a), (), Var(1, (5,), f32))])
    with pytest.raises(ValueError, match="shape rule"):
        wrong_type.verify()
    not_ssa = good.copy(eqns=[Eqn(add, (a, a), (), b), Eqn(add, (b, b), (), b)])
    with pytest.raises(ValueError, match="not SSA"):
        not_ssa.verify()
    with pytest.raises(ValueError, match="not defined"):
        good.copy(outputs=[c]).verify()


def test_replay_on_new_inputs_matches_eager_no_baked_constants():
    def f(x, y):
        z = jg.softmax(x * 2.0 + y[0], dim=1)
        return (z * y).sum(0) + x.mean()

    x, y = jg.randn(3, 4), jg.randn(3, 4)
    tape = trace(f, x, y)
    for seed in range(3):
        rng = np.random.default_rng(seed)
        x2 = rng.standard_normal((3, 4)).astype(np.float32)
        y2 = rng.standard_normal((3, 4)).astype(np.float32)
        (got,) = run(tape, x2, y2)
        np.testing.assert_array_equal(got, f(jg.tensor(x2), jg.tensor(y2)).numpy())


def _tape_of(fn, *shapes):
    args = [jg.randn(*s) for s in shapes]
    return trace(fn, *args), [a.numpy() for a in args]


def _same_meaning(before, after, arrays):
    after.verify()
    for a, b in zip(run(before, *arrays), run(after, *arrays)):
        np.testing.assert_array_equal(a, b)


def test_dce_drops_unused_equations():
    def f(x):
        unused = jg.exp(x) * 3.0  # noqa: F841
        return x + 1.0

    tape, arrays = _tape_of(f, (3,))
    out = dce(tape)
    assert [e.prim.name for e in out.eqns] == ["add"]
    _same_meaning(tape, out, arrays)


def test_cse_merges_repeated_subexpressions():
    def f(x):
        return jg.tanh(x) * jg.tanh(x) + jg.tanh(x)

    tape, arrays = _tape_of(f, (3,))
    out = cse(tape)
    assert sum(e.prim.name == "tanh" for e in out.eqns) == 1
    _same_meaning(tape, out, arrays)


def test_fold_constants_evaluates_constant_subgraphs():
    def f(x):
        c = jg.ones(3) * 2.0 + jg.arange(3).float()
        return x * jg.exp(c)

    tape, arrays = _tape_of(f, (3,))
    out = fold_constants(tape)
    assert [e.prim.name for e in out.eqns] == ["mul"]
    _same_meaning(tape, out, arrays)


@pytest.mark.parametrize(
    "fn,gone",
    [
        (lambda x: x * 1.0 + 0.0, {"mul", "add"}),
        (lambda x: (x - 0.0) / 1.0, {"sub", "div"}),
        (lambda x: jg.neg(jg.neg(x)), {"neg"}),
        (lambda x: x.T.T + 1.0, {"permute"}),
        (lambda x: x.reshape(6).reshape(3, 2).reshape(2, 3) + 1.0, {"reshape"}),
        (lambda x: x**1.0, {"pow"}),
        (lambda x: x.float() + 1.0, {"cast"}),
    ],
)
def test_simplify_algebraic_identities(fn, gone):
    tape, arrays = _tape_of(fn, (2, 3))
    out = simplify(tape)
    assert not gone & {e.prim.name for e in out.eqns}, str(out)
    _same_meaning(tape, out, arrays)


def test_simplify_keeps_broadcasting_multiplications():
    def f(x):
        return x[0] * jg.ones(2, 3)  # changes the shape: not an identity

    tape, arrays = _tape_of(f, (2, 3))
    out = simplify(tape)
    assert out.outputs[0].shape == (2, 3)
    _same_meaning(tape, out, arrays)


def test_permute_of_permute_composes():
    def f(x):
        return x.permute(1, 2, 0).permute(2, 0, 1).permute(0, 2, 1) + 1.0

    tape, arrays = _tape_of(f, (2, 3, 4))
    out = simplify(tape)
    assert sum(e.prim.name == "permute" for e in out.eqns) == 1
    _same_meaning(tape, out, arrays)


def test_transposed_product_becomes_a_product_of_transposes():
    def f(a, b):
        return (a @ b).T * 2.0

    tape, arrays = _tape_of(f, (3, 4), (4, 5))
    out = simplify(simplify(tape))
    matmul = next(e for e in out.eqns if e.prim.name == "matmul")
    assert matmul.out.shape == (5, 3)  # B^T A^T: no transpose of the result
    _same_meaning(tape, out, arrays)


@pytest.mark.parametrize(
    "pieces",
    [(4, 4, 4), (3, 5), (2, 3, 3)],  # (2, 3, 3): pieces 2 then 0, a gap where 1 would be
)
def test_sum_of_disjoint_pads_becomes_one_concatenation(pieces):
    def f(x, g):
        parts = jg.split(x, list(pieces), dim=1)
        used = [2, 0] if pieces == (2, 3, 3) else range(len(parts))
        total = None
        for i in used:  # the gradient of each piece, padded back to x's shape
            padded = jg.nn.functional.pad(parts[i] * g[:, : parts[i].shape[1]], _widths(x, i))
            total = padded if total is None else total + padded
        return total

    def _widths(x, i):
        lo = sum(pieces[:i])
        return (lo, x.shape[1] - lo - pieces[i])

    tape, arrays = _tape_of(f, (3, sum(pieces)), (3, max(pieces)))
    out = simplify(tape)
    names = [e.prim.name for e in out.eqns]
    assert names.count("cat") == 1 and "add" not in names, str(out)
    # every piece: no pad left; a missing piece: one pad for the zeros in its place
    assert names.count("pad") == (1 if pieces == (2, 3, 3) else 0), str(out)
    _same_meaning(tape, out, arrays)


def test_overlapping_pads_are_added():
    def f(x):
        return jg.nn.functional.pad(x[:, :3], (0, 2)) + jg.nn.functional.pad(x[:, 1:], (1, 0))

    tape, arrays = _tape_of(f, (2, 5))
    out = simplify(tape)
    assert "add" in [e.prim.name for e in out.eqns]
    _same_meaning(tape, out, arrays)
