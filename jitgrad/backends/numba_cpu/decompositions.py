"""Kernels of the linear algebra primitives (kind ``other``: inv, det, slogdet, solve,
cholesky, qr, svd, eigh): a loop over the batch that copies each matrix out of its buffer,
calls NumPy's ``np.linalg`` as Numba compiles it (SciPy's LAPACK), and stores the result.

An exception cannot leave a kernel, so each failure LAPACK would raise is found first (a zero
pivot, a leading minor that is not positive-definite, a non-finite input): the kernel fills
that matrix's result with NaN and records (code, batch element + 1) in its status buffer, and
the executable raises PyTorch's error after the call (``raise_failures``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ... import dtypes
from ...ir.tape import Var
from .codegen import _NP, Kernel, KernelGen, _Body, at, numel
from .plan import Plan
from .source import _finish


@dataclass(frozen=True)
class Rule:
    """How a kernel computes one primitive on the matrices ``m0, m1, ...`` of a batch element:
    ``check`` (an expression, 0 when the call can go ahead, else a failure code), ``call``
    (statements leaving the result in ``res``), the rank of ``res`` and the message of a
    failure (``message(code)``)."""

    check: Callable  # params -> expression
    call: Callable  # params -> statements
    rank: int
    message: Callable | None = None


def _inv_message(code):
    return (
        f"linalg.inv: {{batch}}The diagonal element {code} is zero, the inversion could not be "
        "completed because the input matrix is singular."
    )


def _cholesky_message(code):
    return (
        "linalg.cholesky: {batch}The factorization could not be completed because the input is "
        f"not positive-definite (the leading minor of order {code} is not positive-definite)."
    )


RULES: dict[str, Rule] = {
    "inv": Rule(
        lambda p: "lu_zero_pivot(m0)", lambda p: ["res = np.linalg.inv(m0)"], 2, _inv_message
    ),
    "det": Rule(lambda p: "0", lambda p: ["res = np.linalg.det(m0)"], 0),
    "slogdet": Rule(
        lambda p: "0",
        lambda p: [
            "sg, la = np.linalg.slogdet(m0)",
            "res = np.empty(2, m0.dtype)",
            "res[0] = sg",
            "res[1] = la",
        ],
        1,
    ),
    "solve": Rule(
        lambda p: "lu_zero_pivot(m0)",
        lambda p: ["res = np.linalg.solve(m0, m1)"],
        2,
        lambda code: "torch.linalg.solve: The solver failed because the input matrix is singular.",
    ),
    "cholesky": Rule(
        lambda p: "cholesky_fail_order(m0)",
        lambda p: ["res = np.linalg.cholesky(symmetric_from(m0, True))"],
        2,
        _cholesky_message,
    ),
    "qr": Rule(
        lambda p: "0",
        lambda p: ["qq, rr = np.linalg.qr(m0)", f"res = {'qq' if p['part'] == 'Q' else 'rr'}"],
        2,
    ),
    "svd": Rule(
        lambda p: "0 if all_finite(m0) else 1",
        lambda p: [
            f"uu, ss, vv = np.linalg.svd(m0, {int(p['full_matrices'])})",
            f"res = {dict(U='uu', S='ss', Vh='vv')[p['part']]}",
        ],
        2,
        lambda code: (
            "linalg.svd: The algorithm failed to converge because the input matrix contained "
            "non-finite values."
        ),
    ),
    "eigh": Rule(
        lambda p: "0 if all_finite(m0) else 1",
        lambda p: [
            f"ww, qv = np.linalg.eigh(symmetric_from(m0, {p['UPLO'] == 'L'}))",
            f"res = {'ww' if p['part'] == 'L' else 'qv'}",
        ],
        2,
        lambda code: (
            "linalg.eigh: The algorithm failed to converge because the input matrix is "
            "ill-conditioned or has too many repeated eigenvalues (error code: 1)."
        ),
    ),
}
# (svd's S and eigh's eigenvalues are vectors: their rank is set per part, see _rank)


def _rank(e) -> int:
    p = e.kwargs
    if e.prim.name == "svd" and p["part"] == "S":
        return 1
    if e.prim.name == "eigh" and p["part"] == "L":
        return 1
    return RULES[e.prim.name].rank


def linalg_kernel(plan: Plan, v: Var) -> Kernel:
    e = plan.producer[v]
    rule = RULES[e.prim.name]
    g = KernelGen(plan, "linalg", v)
    g.covers.append(e)
    out = g.buf(v)
    x0 = e.inputs[0]
    n_batch = numel(x0.shape[:-2])
    rank = _rank(e)
    per = numel(v.shape[v.ndim - rank :]) if rank else 1
    batch = g.dim(("batch", v), n_batch)
    size = g.dim(("per", v), per)
    status = g.scratch_buf(2, dtypes.int64)
    body = _Body(g)
    body.emit(f"{status}[0] = 0")
    body.emit(f"{status}[1] = 0")
    body.emit(f"for q in range({batch}):")
    body.indent += 1
    for j, x in enumerate(e.inputs):
        r, c = g.vdim(x, x.ndim - 2), g.vdim(x, x.ndim - 1)
        body.emit(f"m{j} = np.empty(({r}, {c}), {_NP[x.dtype.name]})")
        body.emit(f"for i in range({r}):")
        body.emit(f"    for j in range({c}):")
        body.emit(f"        m{j}[i, j] = {at(g.buf(x), f'(q * {r} + i) * {c} + j')}")
    body.emit(f"fail = {rule.check(e.kwargs)}")
    body.emit("if fail == 0:")
    body.indent += 1
    for line in rule.call(e.kwargs):
        body.emit(line)
    if rank == 0:
        body.emit(f"{at(out, 'q')} = res")
    elif rank == 1:
        body.emit(f"for i in range({size}):")
        body.emit(f"    {at(out, f'q * {size} + i')} = res[i]")
    else:
        r, c = g.vdim(v, v.ndim - 2), g.vdim(v, v.ndim - 1)
        body.emit(f"for i in range({r}):")
        body.emit(f"    for j in range({c}):")
        body.emit(f"        {at(out, f'(q * {r} + i) * {c} + j')} = res[i, j]")
    body.indent -= 1
    body.emit("else:")
    body.emit(f"    for i in range({size}):")
    body.emit(f"        {at(out, f'q * {size} + i')} = np.nan")
    body.emit(f"    if {status}[0] == 0:")
    body.emit(f"        {status}[0] = fail")
    body.emit(f"        {status}[1] = q + 1")
    kernel = _finish(g, body.lines, False)
    if rule.message is not None:
        kernel.status = (g.scratch[-1], rule.message, x0.ndim > 2)
    return kernel


def raise_failures(checks: list) -> None:
    """After a call: raise the first failure a linear algebra kernel recorded, as PyTorch's
    LinAlgError."""
    for arr, message, batched in checks:
        if arr[0]:
            from ...ops.linalg import LinAlgError

            batch = f"(Batch element {arr[1] - 1}): " if batched else ""
            raise LinAlgError(message(int(arr[0])).replace("{batch}", batch))
