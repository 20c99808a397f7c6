"""``gradcheck`` and ``gradgradcheck``: analytical gradients against finite differences.

The numerical Jacobian perturbs each input's buffer in place (through ``.data``, so no version
counter moves and saved tensors stay valid), evaluates the function on both sides and takes the
central difference; the buffer is restored exactly afterwards. The analytical Jacobian is built
row by row with ``autograd.grad`` and unit ``grad_outputs``. Both are laid out as PyTorch's:
``(input.numel(), output.numel())`` per (output, input) pair, so failure messages read the same.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from ..tensor import Tensor
from .engine import grad as _grad

__all__ = ["GradcheckError", "gradcheck", "gradgradcheck"]


class GradcheckError(RuntimeError):
    """Error raised by :func:`gradcheck` and :func:`gradgradcheck`."""


def _F():
    # Imported on use: the ops package imports autograd while it initialises.
    from ..ops import functions

    return functions


def _as_tuple(x) -> tuple:
    if isinstance(x, tuple):
        return x
    if isinstance(x, list):
        return tuple(x)
    return (x,)


def _differentiable_outputs(x) -> tuple:
    return tuple(o for o in _as_tuple(x) if isinstance(o, Tensor) and o.requires_grad)


def _diff_output_positions(func_out: tuple) -> list:
    """Where the differentiable outputs sit among all of the function's outputs."""
    return [k for k, o in enumerate(func_out) if isinstance(o, Tensor) and o.requires_grad]


def _diff_inputs(tupled_inputs: tuple) -> list:
    """(position, tensor) for every input that requires grad."""
    return [
        (i, t) for i, t in enumerate(tupled_inputs) if isinstance(t, Tensor) and t.requires_grad
    ]


def _zeros(shape: tuple, dtype) -> Tensor:
    from ..factories import zeros

    return zeros(tuple(shape), dtype=dtype)


def _unit(n: int, j: int, dtype, shape: tuple) -> Tensor:
    """The j-th standard basis vector of R^n, reshaped to ``shape``."""
    from ..factories import arange

    F = _F()
    return F.reshape(F.cast(F.eq(arange(n), j), dtype), tuple(shape))


def _allclose(a: Tensor, b: Tensor, rtol: float, atol: float) -> bool:
    # torch.allclose: |a - b| <= atol + rtol * |b|, NaN never close
    F = _F()
    dtype = F.result_type(a, b)
    a, b = F.cast(a, dtype), F.cast(b, dtype)
    return bool(F.all(F.le(F.abs(F.sub(a, b)), F.add(F.mul(F.abs(b), rtol), atol))))


def _max_abs_diff(a: Tensor, b: Tensor) -> float:
    F = _F()
    if a.numel() == 0:
        return 0.0
    return float(F.amax(F.abs(F.sub(a, b))))


def _check_inputs(tupled_inputs: tuple) -> None:
    any_requires_grad = False
    for idx, inp in enumerate(tupled_inputs):
        if not (isinstance(inp, Tensor) and inp.requires_grad):
            continue
        if inp.dtype.name != "float64":
            warnings.warn(
                f"Input #{idx} requires gradient and is not a double precision floating point or "
                "complex. This check will likely fail if all the inputs are not of double "
                "precision floating point or complex. Convert them with .double() first.",
                stacklevel=3,
            )
        overlapping = not all(st > 0 or sz <= 1 for st, sz in zip(inp.stride(), inp.shape))
        if overlapping and inp.numel() > 0:
            raise RuntimeError(
                f"The {idx}th input has a dimension with stride 0. gradcheck only supports inputs "
                "that are non-overlapping to be able to compute the numerical gradients "
                "correctly. You should call .contiguous on the input before passing it to "
                "gradcheck."
            )
        any_requires_grad = True
    if not any_requires_grad:
        raise ValueError(
            "gradcheck expects at least one input tensor to require gradient, but none of them "
            "have requires_grad=True. Set requires_grad=True on the inputs to check."
        )


# -- numerical side --------------------------------------------------------------------------------


def _evaluate(func: Callable, tupled_inputs: tuple) -> tuple:
    # Cloned: an output may alias an input whose buffer is about to be perturbed again.
    F = _F()
    return tuple(F.clone(o.detach()) for o in _as_tuple(func(*tupled_inputs)))


def _central_difference(func, tupled_inputs, entry: Tensor, delta, eps: float) -> tuple:
    """(f(x + delta) - f(x - delta)) / (2 eps) per output, flattened; ``entry`` is restored."""
    F = _F()
    orig = F.clone(entry)
    entry.copy_(F.sub(orig, delta))
    outa = _evaluate(func, tupled_inputs)
    entry.copy_(F.add(orig, delta))
    outb = _evaluate(func, tupled_inputs)
    entry.copy_(orig)
    res = []
    for a, b in zip(outa, outb):
        if a.shape != b.shape or a.dtype != b.dtype:
            raise GradcheckError(
                f"Expected output to have the same shape and dtype when perturbed by {eps}: got "
                f"{list(a.shape)} {a.dtype} and {list(b.shape)} {b.dtype}."
            )
        res.append(F.reshape(F.div(F.sub(b, a), 2 * eps), (-1,)))
    return tuple(res)


def _numerical_jacobian(func, tupled_inputs, func_out: tuple, inp: Tensor, eps: float) -> list:
    """For one input: per output, the (inp.numel(), out.numel()) Jacobian by central differences."""
    F = _F()
    perturb = inp.data  # shares the buffer, not the version counter
    cols = [[] for _ in func_out]
    for idx in np.ndindex(*inp.shape):
        for k, col in enumerate(_central_difference(func, tupled_inputs, perturb[idx], eps, eps)):
            cols[k].append(col)
    return [F.stack(c, 0) if c else _zeros((0, o.numel()), o.dtype) for c, o in zip(cols, func_out)]


# -- analytical side -------------------------------------------------------------------------------


def _vjp(output: Tensor, diff_inputs: list, grad_output: Tensor) -> tuple:
    return _grad(output, diff_inputs, grad_output, retain_graph=True, allow_unused=True)


def _stack_columns(cols_per_input: list, diff_inputs: list, n_cols: int) -> tuple:
    """Jacobians (inp.numel(), n_cols) from per-column gradients; also (sizes ok, types ok)."""
    F = _F()
    sizes_ok = types_ok = True
    jacobians = []
    for cols, inp in zip(cols_per_input, diff_inputs):
        flat = []
        for g in cols:
            if g is not None and g.shape != inp.shape:
                sizes_ok = False
                g = None
            elif g is not None and g.dtype != inp.dtype:
                types_ok = False
            if g is None:
                flat.append(_zeros((inp.numel(),), inp.dtype))
            else:
                flat.append(F.reshape(F.cast(g, inp.dtype), (-1,)))
        jacobians.append(F.stack(flat, 1) if flat else _zeros((inp.numel(), n_cols), inp.dtype))
    return jacobians, sizes_ok, types_ok


def _analytical_jacobian(
    output: Tensor, diff_inputs: list, nondet_tol: float, check_grad_dtypes: bool, v=None
) -> list:
    """Rows v_j^T J for unit v_j (or one given ``v``), computed twice to catch nondeterminism."""

    def columns():
        if v is not None:
            grads = [_vjp(output, diff_inputs, F.reshape(v, tuple(output.shape)))]
        else:
            n = output.numel()
            grads = [
                _vjp(output, diff_inputs, _unit(n, j, output.dtype, output.shape)) for j in range(n)
            ]
        return [[g[k] for g in grads] for k in range(len(diff_inputs))]

    F = _F()
    n_cols = 1 if v is not None else output.numel()
    jac1, sizes_ok, types_ok = _stack_columns(columns(), diff_inputs, n_cols)
    jac2, _, _ = _stack_columns(columns(), diff_inputs, n_cols)
    if not types_ok and check_grad_dtypes:
        raise GradcheckError("Gradient has dtype mismatch")
    if not sizes_ok:
        raise GradcheckError(
            "Analytical gradient has incorrect size: a gradient's shape differs from its "
            "input's. Make backward return one gradient of each input's shape."
        )
    for a, b in zip(jac1, jac2):
        if _max_abs_diff(a, b) > nondet_tol:
            raise GradcheckError(
                "Backward is not reentrant, i.e., running backward with same input and "
                "grad_output multiple times gives different values, although analytical gradient "
                f"matches numerical gradient.The tolerance for nondeterminism was {nondet_tol}. "
                "If the backward is nondeterministic by design, pass nondet_tol=<tol>."
            )
    return jac1


def _notallclose_msg(analytical, numerical, output_idx: int, input_idx: int) -> str:
    return (
        f"Jacobian mismatch for output {output_idx:d} with respect to input {input_idx:d},\n"
        f"numerical:{numerical}\nanalytical:{analytical}\n"
    )


_FIX_HINT = (
    "The analytical gradient (the function's backward: a custom Function's backward or a "
    "primitive's vjp) disagrees with finite differences for this output and input; check that "
    "rule. Inputs should be float64 (float32 is too coarse for finite differences), and away "
    "from points where the function is not differentiable."
)


# -- the checks --------------------------------------------------------------------------------


def _slow_gradcheck(func, func_out, tupled_inputs, outputs, eps, rtol, atol, dtypes_, nondet):
    diff = [t for _, t in _diff_inputs(tupled_inputs)]
    func_out = _as_tuple(func_out)
    numerical = [_numerical_jacobian(func, tupled_inputs, func_out, t, eps) for t in diff]
    if not outputs:
        for per_input in numerical:
            for jac in per_input:
                if bool(_F().any(_F().ne(jac, 0))):
                    raise GradcheckError(
                        "Numerical gradient for function expected to be zero: no output "
                        "requires grad, yet the outputs change with the inputs."
                    )
        return
    diff_positions = _diff_output_positions(func_out)
    for i, o in enumerate(outputs):
        analytical = _analytical_jacobian(o, diff, nondet, dtypes_)
        for j, a in enumerate(analytical):
            n = numerical[j][diff_positions[i]]
            if not _allclose(a, n, rtol, atol):
                raise GradcheckError(_notallclose_msg(a, n, i, j) + _FIX_HINT)


def _random_vector(generator, n: int, dtype) -> Tensor:
    F = _F()
    u = generator.uniform((n,), dtype)
    return F.div(u, F.sqrt(F.sum(F.mul(u, u)))) if n else u


def _dot(a: Tensor, b: Tensor) -> Tensor:
    F = _F()
    return F.sum(F.mul(a, F.cast(b, a.dtype)))


def _fast_gradcheck(func, func_out, tupled_inputs, outputs, eps, rtol, atol, dtypes_, nondet):
    # Compares v^T (J u) from finite differences with (v^T J) u from backward, for random unit
    # vectors u (per input) and v (per output): two function evaluations per input, one backward
    # per output, instead of whole Jacobians.
    from ..random import Generator

    F = _F()
    generator = Generator()  # a private one: the user's random stream is left alone
    diff = [t for _, t in _diff_inputs(tupled_inputs)]
    all_u = [_random_vector(generator, t.numel(), t.dtype) for t in diff]
    all_v = [_random_vector(generator, o.numel(), o.dtype) for o in outputs]
    func_out = _as_tuple(func_out)
    diff_positions = _diff_output_positions(func_out)
    numerical_ju = []
    for t, u in zip(diff, all_u):
        delta = F.mul(F.reshape(u, tuple(t.shape)), eps)
        numerical_ju.append(_central_difference(func, tupled_inputs, t.data, delta, eps))
    if not outputs:
        for ju in numerical_ju:
            for x in ju:
                if x.numel() and float(F.amax(F.abs(x))) > nondet:
                    raise GradcheckError("Numerical gradient for function expected to be zero")
        return
    for j, (o, v) in enumerate(zip(outputs, all_v)):
        vj = _analytical_jacobian(o, diff, nondet, dtypes_, v=v)
        for i, (u, ju) in enumerate(zip(all_u, numerical_ju)):
            a = _dot(F.reshape(vj[i], (-1,)), u)
            n = _dot(v, ju[diff_positions[j]])
            tol = atol * float(F.sum(u)) * float(F.sum(v))
            if not _allclose(a, n, rtol, tol):
                slow_n = _numerical_jacobian(func, tupled_inputs, func_out, diff[i], eps)
                slow_n = slow_n[diff_positions[j]]
                slow_a = _analytical_jacobian(o, diff, float("inf"), False)[i]
                msg = (
                    "\nThe above quantities relating the numerical and analytical jacobians are "
                    "computed \nin fast mode. Below, we recompute numerical and analytical "
                    f"jacobians in slow mode:\n\nNumerical:\n {slow_n}\nAnalytical:\n{slow_a}\n\n"
                    "The max per-element difference (slow mode) is: "
                    f"{_max_abs_diff(slow_n, slow_a)}.\n"
                )
                if _allclose(slow_a, slow_n, rtol, atol):
                    msg += (
                        "Fast gradcheck failed but element-wise differences are small. This "
                        "means that the test might've passed in slow_mode! Call gradcheck with "
                        "fast_mode=False.\n"
                    )
                raise GradcheckError(_notallclose_msg(a, n, j, i) + msg + _FIX_HINT)


def _test_backward_mul_by_grad_output(outputs: tuple, tupled_inputs: tuple) -> None:
    F = _F()
    diff = [t for _, t in _diff_inputs(tupled_inputs)]
    zeros = tuple(F.zeros_like(o) for o in outputs)
    grads = _grad(outputs, diff, zeros, retain_graph=True, allow_unused=True)
    for gi, di in zip(grads, diff):
        if gi is None:
            continue
        if not bool(F.all(F.eq(gi, 0))):
            raise GradcheckError(
                "backward not multiplied by grad_output: a zero grad_output gave a nonzero "
                "gradient. The backward must scale its result by the incoming gradient."
            )
        if gi.dtype != di.dtype:
            raise GradcheckError("grad is incorrect type")
        if gi.shape != di.shape:
            raise GradcheckError("grad is incorrect size")


def _test_undefined_backward_mode(func: Callable, outputs: tuple, tupled_inputs: tuple) -> None:
    # An output whose gradient is undefined reaches its node as None (a Function's backward
    # sees None when it calls ctx.set_materialize_grads(False)). Leaving every output out runs
    # no backward at all, so the case that can fail here is leaving out one output at a time.
    F = _F()
    diff = [t for _, t in _diff_inputs(tupled_inputs)]
    if len(outputs) < 2:
        return
    for skip in range(len(outputs)):
        fresh = _differentiable_outputs(func(*tupled_inputs))
        roots = tuple(o for k, o in enumerate(fresh) if k != skip)
        try:
            grads = _grad(roots, diff, tuple(F.zeros_like(o) for o in roots), allow_unused=True)
        except Exception as e:
            raise GradcheckError(
                "Expected backward function to handle undefined output grads. A backward gets "
                "None for an output whose gradient is undefined and must treat it as zeros; or "
                "call gradcheck with check_undefined_grad=False."
            ) from e
        for gi in grads:
            if gi is not None and not bool(F.all(F.eq(gi, 0))):
                raise GradcheckError(
                    "Expected all input grads to be undefined or zero when all output grads are "
                    "undefined or zero. A backward must return zeros (or None) when its incoming "
                    "gradients are undefined or zero."
                )


def _unsupported(flag: str, why: str) -> NotImplementedError:
    return NotImplementedError(f"gradcheck: {flag}=True is not supported: {why}; leave it False.")


def gradcheck(
    func: Callable,
    inputs,
    *,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
    nondet_tol: float = 0.0,
    check_undefined_grad: bool = True,
    check_grad_dtypes: bool = False,
    check_batched_grad: bool = False,
    check_batched_forward_grad: bool = False,
    check_forward_ad: bool = False,
    check_backward_ad: bool = True,
    fast_mode: bool = False,
    masked: bool | None = None,
) -> bool:
    """Check the gradients of ``func`` at ``inputs`` against central finite differences.

    Returns True when every (output, input) Jacobian satisfies ``allclose(analytical, numerical,
    rtol, atol)``; otherwise raises :class:`GradcheckError` (or returns False when
    ``raise_exception=False``). Inputs should be float64 tensors with ``requires_grad=True``.
    """
    if not (check_forward_ad or check_backward_ad):
        raise ValueError(
            "Expected at least one of check_forward_ad or check_backward_ad to be True"
        )
    if check_forward_ad or check_batched_forward_grad:
        raise _unsupported("check_forward_ad", "jitgrad has no forward-mode AD")
    if check_batched_grad:
        raise _unsupported("check_batched_grad", "jitgrad has no vmap")
    try:
        tupled_inputs = _as_tuple(inputs)
        _check_inputs(tupled_inputs)
        func_out = func(*tupled_inputs)
        outputs = _differentiable_outputs(func_out)
        check = _fast_gradcheck if fast_mode else _slow_gradcheck
        check(
            func, func_out, tupled_inputs, outputs, eps, rtol, atol, check_grad_dtypes, nondet_tol
        )
        if outputs:
            _test_backward_mul_by_grad_output(outputs, tupled_inputs)
            if check_undefined_grad:
                _test_undefined_backward_mode(func, outputs, tupled_inputs)
    except GradcheckError:
        if raise_exception:
            raise
        return False
    return True


def _random_grad_outputs(outputs: tuple, noncontiguous: bool) -> tuple:
    """Uniform [-1, 1) tensors shaped like the outputs, requiring grad (a private generator)."""
    from .. import dtypes
    from ..random import Generator

    F = _F()
    generator = Generator()
    res = []
    for o in outputs:
        dtype = o.dtype if o.is_floating_point() else dtypes.float64
        shape = tuple(o.shape)
        if noncontiguous and len(shape) and o.numel() > 1:
            # every other element of a wider buffer: a strided, non-contiguous leaf
            wide = shape[:-1] + (2 * shape[-1],)
            g = F.sub(F.mul(generator.uniform(wide, dtype), 2.0), 1.0)
            g = g[(slice(None),) * (len(shape) - 1) + (slice(None, None, 2),)]
        else:
            g = F.sub(F.mul(generator.uniform(shape, dtype), 2.0), 1.0)
        res.append(g.detach().requires_grad_())
    return tuple(res)


def gradgradcheck(
    func: Callable,
    inputs,
    grad_outputs=None,
    *,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    gen_non_contig_grad_outputs: bool = False,
    raise_exception: bool = True,
    nondet_tol: float = 0.0,
    check_undefined_grad: bool = True,
    check_grad_dtypes: bool = False,
    check_batched_grad: bool = False,
    check_fwd_over_rev: bool = False,
    check_rev_over_rev: bool = True,
    fast_mode: bool = False,
    masked: bool = False,
) -> bool:
    """Check second derivatives: ``gradcheck`` of ``(inputs, grad_outputs) -> autograd.grad(
    func(inputs), inputs, grad_outputs, create_graph=True)``."""
    if not (check_fwd_over_rev or check_rev_over_rev):
        raise ValueError(
            "Expected at least one of check_fwd_over_rev or check_rev_over_rev to be True"
        )
    tupled_inputs = _as_tuple(inputs)
    if grad_outputs is None:
        outputs = _differentiable_outputs(func(*tupled_inputs))
        tupled_grad_outputs = _random_grad_outputs(outputs, gen_non_contig_grad_outputs)
    else:
        tupled_grad_outputs = _as_tuple(grad_outputs)
    num_outputs = len(tupled_grad_outputs)
    diff_input_idx = {i for i, _ in _diff_inputs(tupled_inputs)}

    def new_func(*args):
        input_args = args[: len(args) - num_outputs]
        outputs = _differentiable_outputs(func(*input_args))
        grad_outs = args[len(args) - num_outputs :]
        diff_input_args = tuple(x for i, x in enumerate(input_args) if i in diff_input_idx)
        grad_inputs = _grad(
            outputs, diff_input_args, grad_outs, create_graph=True, allow_unused=True
        )
        return tuple(g for g in grad_inputs if g is not None)

    return gradcheck(
        new_func,
        tupled_inputs + tupled_grad_outputs,
        eps=eps,
        atol=atol,
        rtol=rtol,
        raise_exception=raise_exception,
        nondet_tol=nondet_tol,
        check_undefined_grad=check_undefined_grad,
        check_grad_dtypes=check_grad_dtypes,
        check_batched_grad=check_batched_grad,
        fast_mode=fast_mode,
        check_forward_ad=check_fwd_over_rev,
        check_backward_ad=check_rev_over_rev,
        masked=masked,
    )
