"""Higher-level differentiation: ``vjp``, ``jvp``, ``jacobian``, ``hessian``, ``vhp``, ``hvp``.

The counterpart of ``torch.autograd.functional``, built on ``autograd.grad``. Inputs are handed to
the user's function as fresh tensors that require grad (detached copies, or differentiable
aliases under ``create_graph``), so tensors the function captures by closure are never mistaken
for its inputs. Forward-mode products use the double-backward trick: for ``g -> J^T g``, which is
linear in ``g``, the gradient with respect to ``g`` against ``v`` is ``J v``.
"""

from __future__ import annotations

from collections.abc import Callable

from ..tensor import Tensor, apply
from .engine import grad as _grad
from .grad_mode import STATE, enable_grad, set_grad_enabled

__all__ = ["vjp", "jvp", "jacobian", "hessian", "hvp", "vhp"]

_Tensors = Tensor | tuple


def _F():
    # Imported on use: the ops package imports autograd while it initialises.
    from ..ops import functions

    return functions


# -- tuple handling --------------------------------------------------------------------------------


def _as_tuple(inp, arg_name: str, fn_name: str) -> tuple[bool, tuple]:
    """(was it a tuple, the tuple); rejects anything that is not a Tensor or tuple of Tensors."""
    is_tuple = isinstance(inp, tuple)
    if not is_tuple:
        inp = (inp,)
    for i, el in enumerate(inp):
        if not isinstance(el, Tensor):
            where = f"the value at index {i}" if is_tuple else f"the given {arg_name}"
            raise TypeError(
                f"The {arg_name} given to {fn_name} must be either a Tensor or a tuple of Tensors "
                f"but {where} has type {type(el)}. Wrap several tensors in a tuple (not a list)."
            )
    return is_tuple, inp


def _tuple_postprocess(res, to_unpack):
    """Undo ``_as_tuple``: one flag per nesting level (outer first)."""
    if isinstance(to_unpack, tuple):
        if not to_unpack[1]:
            res = tuple(el[0] for el in res)
        if not to_unpack[0]:
            res = res[0]
    elif not to_unpack:
        res = res[0]
    return res


def _grad_preprocess(inputs: tuple, create_graph: bool, need_graph: bool) -> tuple:
    # Always a new Tensor object, so that inputs captured by the function's closure are told
    # apart from the arguments. Under create_graph an input that requires grad is aliased with a
    # differentiable view, so gradients still reach it.
    res = []
    for inp in inputs:
        if create_graph and inp.requires_grad:
            from ..ops import prims

            res.append(apply(prims.reshape_p, (inp,), {"shape": tuple(inp.shape)}))
        else:
            res.append(inp.detach().requires_grad_(need_graph))
    return tuple(res)


def _grad_postprocess(inputs, create_graph: bool):
    # Results carry history only when the caller asked for it.
    if isinstance(inputs[0], Tensor):
        return inputs if create_graph else tuple(inp.detach() for inp in inputs)
    return tuple(_grad_postprocess(inp, create_graph) for inp in inputs)


def _validate_v(v: tuple, other: tuple, is_other_tuple: bool) -> None:
    if len(other) != len(v):
        if is_other_tuple:
            raise RuntimeError(
                f"v is a tuple of invalid length: should be {len(other)} but got {len(v)}. "
                "Pass one tensor per entry."
            )
        raise RuntimeError("The given v should contain a single Tensor.")
    for idx, (el_v, el_other) in enumerate(zip(v, other)):
        if el_v.shape != el_other.shape:
            prepend = f"Entry {idx} in " if is_other_tuple else ""
            raise RuntimeError(
                f"{prepend}v has invalid size: should be {el_other.shape} but got {el_v.shape}."
            )


def _check_requires_grad(inputs: tuple, input_type: str, strict: bool) -> None:
    """The strict-mode errors raised when something turns out independent of the inputs."""
    if not strict:
        return
    for i, inp in enumerate(inputs):
        if inp is None:
            raise RuntimeError(
                f"The output of the user-provided function is independent of input {i}. This is "
                "not allowed in strict mode. Use strict=False to get zeros for it instead."
            )
        if inp.requires_grad:
            continue
        if input_type == "hessian":
            raise RuntimeError(
                f"The hessian of the user-provided function with respect to input {i} is "
                "independent of the input. This is not allowed in strict mode. You should ensure "
                "that your function is thrice differentiable and that the hessian depends on the "
                "inputs."
            )
        if input_type == "jacobian":
            raise RuntimeError(
                "While computing the hessian, found that the jacobian of the user-provided "
                f"function with respect to input {i} is independent of the input. This is not "
                "allowed in strict mode. You should ensure that your function is twice "
                "differentiable and that the jacobian depends on the inputs (this would be "
                "violated by a linear function for example)."
            )
        if input_type == "grad_inputs":
            raise RuntimeError(
                f"The gradient with respect to input {i} is independent of the inputs of the "
                "user-provided function. This is not allowed in strict mode. Use strict=False to "
                "get zeros for it instead."
            )
        raise RuntimeError(
            f"Output {i} of the user-provided function does not require gradients. The outputs "
            "must be computed in a differentiable manner from the input when running in strict "
            "mode (check for no_grad(), detach() or non-float results)."
        )


def _autograd_grad(
    outputs: tuple, inputs: tuple, grad_outputs=None, create_graph=False, retain_graph=None
):
    """``autograd.grad`` that skips outputs without history and answers None for unused inputs."""
    if grad_outputs is None:
        grad_outputs = (None,) * len(outputs)
    new_outputs, new_grad_outputs = [], []
    for out, g in zip(outputs, grad_outputs):
        if out is not None and out.requires_grad:
            new_outputs.append(out)
            new_grad_outputs.append(g)
    if not new_outputs:
        return (None,) * len(inputs)
    return _grad(
        tuple(new_outputs),
        inputs,
        tuple(new_grad_outputs),
        allow_unused=True,
        create_graph=create_graph,
        retain_graph=retain_graph,
    )


_ZERO_MESSAGES = {
    "back": "The output of the user-provided function is independent of input {i}. This is not "
    "allowed in strict mode.",
    "back_trick": "The gradient with respect to the input is independent of entry {i} in the "
    "grad_outputs when using the double backward trick to compute forward mode gradients. This "
    "is not allowed in strict mode.",
    "double_back": "The jacobian of the user-provided function is independent of input {i}. "
    "This is not allowed in strict mode.",
    "double_back_trick": "The hessian of the user-provided function is independent of entry {i} "
    "in the grad_jacobian. This is not allowed in strict mode as it prevents from using the "
    "double backward trick to replace forward mode AD.",
}


def _fill_in_zeros(grads, refs, strict: bool, create_graph: bool, stage: str) -> tuple:
    """Replace missing gradients by zeros (or raise in strict mode)."""
    res = []
    for i, g in enumerate(grads):
        if g is None:
            if strict:
                raise RuntimeError(
                    _ZERO_MESSAGES[stage].format(i=i) + " Use strict=False to get zeros instead."
                )
            g = _F().zeros_like(refs[i])
        elif strict and create_graph and not g.requires_grad:
            what = "hessian" if "double" in stage else "jacobian"
            raise RuntimeError(
                f"The {what} of the user-provided function is independent of input {i}. This is "
                "not allowed in strict mode when create_graph=True."
            )
        res.append(g)
    return tuple(res)


def _prepare_v(v, refs: tuple, is_refs_tuple: bool, create_graph: bool, fn: str, none_msg: str):
    if v is not None:
        _, v = _as_tuple(v, "v", fn)
        v = _grad_preprocess(v, create_graph=create_graph, need_graph=False)
        _validate_v(v, refs, is_refs_tuple)
        return v
    if len(refs) != 1 or refs[0].numel() != 1:
        raise RuntimeError(none_msg)
    return None


def _finish(outputs, result, create_graph: bool, outputs_tuple: bool, result_tuple: bool):
    """(outputs, result), detached unless create_graph, each tuple-ness restored."""
    outputs = _grad_postprocess(outputs, create_graph)
    result = _grad_postprocess(result, create_graph)
    return _tuple_postprocess(outputs, outputs_tuple), _tuple_postprocess(result, result_tuple)


_V_NONE_OUTPUT = (
    "The vector v can only be None if the user-provided function returns a single Tensor with a "
    "single element. Pass v with the same shapes as the outputs."
)
_V_NONE_INPUT = (
    "The vector v can only be None if the input to the user-provided function is a single "
    "Tensor with a single element. Pass v with the same shapes as the inputs."
)


# -- public API ------------------------------------------------------------------------------------


def vjp(
    func: Callable, inputs: _Tensors, v: _Tensors | None = None, create_graph=False, strict=False
) -> tuple:
    """``(func(*inputs), v^T J)``: the vector-Jacobian product at ``inputs``."""
    with enable_grad():
        is_inputs_tuple, inputs = _as_tuple(inputs, "inputs", "vjp")
        inputs = _grad_preprocess(inputs, create_graph=create_graph, need_graph=True)
        outputs = func(*inputs)
        is_outputs_tuple, outputs = _as_tuple(
            outputs, "outputs of the user-provided function", "vjp"
        )
        _check_requires_grad(outputs, "outputs", strict=strict)
        v = _prepare_v(v, outputs, is_outputs_tuple, create_graph, "vjp", _V_NONE_OUTPUT)
    with set_grad_enabled(True if create_graph else STATE.grad_enabled):
        grad_res = _autograd_grad(outputs, inputs, v, create_graph=create_graph)
        result = _fill_in_zeros(grad_res, inputs, strict, create_graph, "back")
    return _finish(outputs, result, create_graph, is_outputs_tuple, is_inputs_tuple)


def jvp(
    func: Callable, inputs: _Tensors, v: _Tensors | None = None, create_graph=False, strict=False
) -> tuple:
    """``(func(*inputs), J v)``: the Jacobian-vector product, by the double-backward trick."""
    F = _F()
    with enable_grad():
        is_inputs_tuple, inputs = _as_tuple(inputs, "inputs", "jvp")
        inputs = _grad_preprocess(inputs, create_graph=create_graph, need_graph=True)
        v = _prepare_v(v, inputs, is_inputs_tuple, create_graph, "jvp", _V_NONE_INPUT)
        outputs = func(*inputs)
        is_outputs_tuple, outputs = _as_tuple(
            outputs, "outputs of the user-provided function", "jvp"
        )
        _check_requires_grad(outputs, "outputs", strict=strict)
        # The backward is linear in grad_outputs, so their value never reaches the result; zeros
        # are safe (no inf or nan to propagate).
        grad_outputs = tuple(F.zeros_like(out).requires_grad_() for out in outputs)
        grad_inputs = _autograd_grad(outputs, inputs, grad_outputs, create_graph=True)
        _check_requires_grad(grad_inputs, "grad_inputs", strict=strict)
    with set_grad_enabled(True if create_graph else STATE.grad_enabled):
        grad_res = _autograd_grad(grad_inputs, grad_outputs, v, create_graph=create_graph)
        result = _fill_in_zeros(grad_res, outputs, strict, create_graph, "back_trick")
    return _finish(outputs, result, create_graph, is_outputs_tuple, is_outputs_tuple)


def _stack_rows(rows: list, lead: tuple, ref: Tensor) -> Tensor:
    """Rows (each of ``ref``'s shape) stacked on a new first axis, reshaped to lead + ref.shape."""
    F = _F()
    shape = tuple(lead) + tuple(ref.shape)
    if not rows:  # an output without elements
        from ..factories import zeros

        return zeros(shape, dtype=ref.dtype)
    return F.reshape(F.stack(rows, 0), shape)


def _jacobian_reverse(outputs: tuple, inputs: tuple, create_graph: bool, strict: bool) -> tuple:
    """One ``autograd.grad`` call per output element: row j of J_i is d out_i[j] / d inputs."""
    F = _F()
    jac = []
    for i, out in enumerate(outputs):
        rows = [[] for _ in inputs]
        flat = F.reshape(out, (-1,))
        for j in range(out.numel()):
            vj = _autograd_grad((flat[j],), inputs, create_graph=create_graph, retain_graph=True)
            for k, (g, inp) in enumerate(zip(vj, inputs)):
                if g is not None:
                    if strict and create_graph and not g.requires_grad:
                        raise RuntimeError(
                            "The jacobian of the user-provided function is independent of input "
                            f"{i}. This is not allowed in strict mode when create_graph=True."
                        )
                    rows[k].append(g)
                else:
                    if strict:
                        raise RuntimeError(
                            f"Output {i} of the user-provided function is independent of input "
                            f"{k}. This is not allowed in strict mode. Use strict=False to get "
                            "zeros for it instead."
                        )
                    rows[k].append(F.zeros_like(inp))
        jac.append(tuple(_stack_rows(r, out.shape, inp) for r, inp in zip(rows, inputs)))
    return tuple(jac)


def _jacobian_forward(func: Callable, inputs: tuple) -> tuple[bool, tuple]:
    """Columns J e_k, one per input element, each a Jacobian-vector product (double backward)."""
    F = _F()
    with enable_grad():
        inputs = _grad_preprocess(inputs, create_graph=False, need_graph=True)
        outputs = func(*inputs)
        is_outputs_tuple, outputs = _as_tuple(
            outputs, "outputs of the user-provided function", "jacobian"
        )
        dummies = tuple(F.zeros_like(out).requires_grad_() for out in outputs)
        grad_inputs = _autograd_grad(outputs, inputs, dummies, create_graph=True)
    used = [k for k, g in enumerate(grad_inputs) if g is not None]
    jac = [[None] * len(inputs) for _ in outputs]
    for k, inp in enumerate(inputs):
        cols = [[] for _ in outputs]
        for e in range(inp.numel()):
            basis = F.reshape(F.cast(F.eq(_arange(inp.numel()), e), inp.dtype), tuple(inp.shape))
            if k in used:
                tangents = tuple(basis if m == k else F.zeros_like(inputs[m]) for m in used)
                jv = _autograd_grad(
                    tuple(grad_inputs[m] for m in used), dummies, tangents, retain_graph=True
                )
            else:
                jv = (None,) * len(outputs)
            for i, (col, out) in enumerate(zip(jv, outputs)):
                cols[i].append(F.zeros_like(out) if col is None else col)
        for i, out in enumerate(outputs):
            # stacked as (in elements, *out.shape); move the input axis last, then split it
            stacked = _stack_rows(cols[i], (inp.numel(),), out)
            stacked = F.reshape(stacked, (inp.numel(), -1))
            jac[i][k] = F.reshape(F.transpose(stacked, 0, 1), tuple(out.shape) + tuple(inp.shape))
    jac = tuple(tuple(row) for row in jac)
    return is_outputs_tuple, _grad_postprocess(jac, False)


def _arange(n: int) -> Tensor:
    from ..factories import arange

    return arange(n)


def jacobian(
    func: Callable,
    inputs: _Tensors,
    create_graph: bool = False,
    strict: bool = False,
    vectorize: bool = False,
    strategy: str = "reverse-mode",
):
    """The Jacobian of ``func`` at ``inputs``: ``J[i][j]`` has shape ``out_i.shape + in_j.shape``.

    A Tensor when there is one input and one output, a tuple when one of them is a tuple, a tuple
    of tuples when both are. ``vectorize`` is accepted for compatibility: there is no vmap, so
    rows are computed one ``autograd.grad`` call at a time either way.
    """
    if strategy not in ("forward-mode", "reverse-mode"):
        raise ValueError(
            'Expected strategy to be either "forward-mode" or "reverse-mode". Hint: If your '
            'function has more outputs than inputs, "forward-mode" tends to be more performant. '
            'Otherwise, prefer to use "reverse-mode".'
        )
    if strategy == "forward-mode":
        if create_graph:
            raise NotImplementedError(
                "jitgrad.autograd.functional.jacobian: `create_graph=True` and "
                '`strategy="forward-mode"` are not supported together (yet). Please either set '
                '`create_graph=False` or `strategy="reverse-mode"`.'
            )
        if strict:
            raise RuntimeError(
                "jitgrad.autograd.functional.jacobian: `strict=True` and "
                '`strategy="forward-mode"` are not supported together (yet). Please either set '
                '`strict=False` or `strategy="reverse-mode"`.'
            )
        if not vectorize:
            raise NotImplementedError(
                "Computing Jacobian using forward-AD or forward-over-reverse Hessian is only "
                "implemented for `vectorize=True`. Pass vectorize=True, or use "
                'strategy="reverse-mode".'
            )
        is_inputs_tuple, inputs = _as_tuple(inputs, "inputs", "jacobian")
        is_outputs_tuple, jac = _jacobian_forward(func, inputs)
        return _tuple_postprocess(jac, (is_outputs_tuple, is_inputs_tuple))

    with enable_grad():
        is_inputs_tuple, inputs = _as_tuple(inputs, "inputs", "jacobian")
        inputs = _grad_preprocess(inputs, create_graph=create_graph, need_graph=True)
        outputs = func(*inputs)
        is_outputs_tuple, outputs = _as_tuple(
            outputs, "outputs of the user-provided function", "jacobian"
        )
        _check_requires_grad(outputs, "outputs", strict=strict)
        if vectorize and strict:
            raise RuntimeError(
                "jitgrad.autograd.functional.jacobian: `strict=True` and `vectorized=True` are "
                "not supported together. Please either set `strict=False` or `vectorize=False`."
            )
        jac = _jacobian_reverse(outputs, inputs, create_graph, strict)
        jac = _grad_postprocess(jac, create_graph)
        return _tuple_postprocess(jac, (is_outputs_tuple, is_inputs_tuple))


def hessian(
    func: Callable,
    inputs: _Tensors,
    create_graph: bool = False,
    strict: bool = False,
    vectorize: bool = False,
    outer_jacobian_strategy: str = "reverse-mode",
):
    """The Hessian of a scalar ``func``: ``H[i][j]`` has shape ``in_i.shape + in_j.shape``."""
    is_inputs_tuple, inputs = _as_tuple(inputs, "inputs", "hessian")
    if outer_jacobian_strategy not in ("forward-mode", "reverse-mode"):
        raise ValueError('Expected strategy to be either "forward-mode" or "reverse-mode".')

    def ensure_single_output_function(*inp):
        out = func(*inp)
        is_out_tuple, t_out = _as_tuple(out, "outputs of the user-provided function", "hessian")
        _check_requires_grad(t_out, "outputs", strict=strict)
        if is_out_tuple or not isinstance(out, Tensor):
            raise RuntimeError("The function given to hessian should return a single Tensor")
        if out.numel() != 1:
            raise RuntimeError(
                "The Tensor returned by the function given to hessian should contain a single "
                f"element (it has shape {list(out.shape)}); reduce it, e.g. with .sum()."
            )
        return _F().reshape(out, ())

    def jac_func(*inp):
        jac = jacobian(ensure_single_output_function, inp, create_graph=True)
        _check_requires_grad(jac, "jacobian", strict=strict)
        return jac

    res = jacobian(
        jac_func,
        inputs,
        create_graph=create_graph,
        strict=strict,
        vectorize=vectorize,
        strategy=outer_jacobian_strategy,
    )
    return _tuple_postprocess(res, (is_inputs_tuple, is_inputs_tuple))


def _scalar_output(func: Callable, inputs: tuple, strict: bool, fn: str) -> tuple:
    outputs = func(*inputs)
    is_outputs_tuple, outputs = _as_tuple(outputs, "outputs of the user-provided function", fn)
    _check_requires_grad(outputs, "outputs", strict=strict)
    if is_outputs_tuple:
        raise RuntimeError(f"The function given to {fn} should return a single Tensor")
    if outputs[0].numel() != 1:
        raise RuntimeError(
            f"The Tensor returned by the function given to {fn} should contain a single element "
            f"(it has shape {list(outputs[0].shape)}); reduce it, e.g. with .sum()."
        )
    return is_outputs_tuple, outputs


def vhp(
    func: Callable, inputs: _Tensors, v: _Tensors | None = None, create_graph=False, strict=False
) -> tuple:
    """``(func(*inputs), v^T H)`` for a scalar function: two reverse passes."""
    with enable_grad():
        is_inputs_tuple, inputs = _as_tuple(inputs, "inputs", "vhp")
        inputs = _grad_preprocess(inputs, create_graph=create_graph, need_graph=True)
        v = _prepare_v(v, inputs, is_inputs_tuple, create_graph, "vhp", _V_NONE_INPUT)
        is_outputs_tuple, outputs = _scalar_output(func, inputs, strict, "vhp")
        jac = _autograd_grad(outputs, inputs, create_graph=True)
        _check_requires_grad(jac, "jacobian", strict=strict)
    with set_grad_enabled(True if create_graph else STATE.grad_enabled):
        grad_res = _autograd_grad(jac, inputs, v, create_graph=create_graph)
        result = _fill_in_zeros(grad_res, inputs, strict, create_graph, "double_back")
    return _finish(outputs, result, create_graph, is_outputs_tuple, is_inputs_tuple)


def hvp(
    func: Callable, inputs: _Tensors, v: _Tensors | None = None, create_graph=False, strict=False
) -> tuple:
    """``(func(*inputs), H v)`` for a scalar function, by the double-backward trick.

    Equal to ``vhp`` whenever the function is twice continuously differentiable (H symmetric);
    ``vhp`` is cheaper.
    """
    F = _F()
    with enable_grad():
        is_inputs_tuple, inputs = _as_tuple(inputs, "inputs", "hvp")
        inputs = _grad_preprocess(inputs, create_graph=create_graph, need_graph=True)
        v = _prepare_v(v, inputs, is_inputs_tuple, create_graph, "hvp", _V_NONE_INPUT)
        is_outputs_tuple, outputs = _scalar_output(func, inputs, strict, "hvp")
        jac = _autograd_grad(outputs, inputs, create_graph=True)
        _check_requires_grad(jac, "jacobian", strict=strict)
        grad_jac = tuple(F.zeros_like(inp).requires_grad_() for inp in inputs)
        double_back = _autograd_grad(jac, inputs, grad_jac, create_graph=True)
        _check_requires_grad(jac, "hessian", strict=strict)
    with set_grad_enabled(True if create_graph else STATE.grad_enabled):
        grad_res = _autograd_grad(double_back, grad_jac, v, create_graph=create_graph)
        result = _fill_in_zeros(grad_res, inputs, strict, create_graph, "double_back_trick")
    return _finish(outputs, result, create_graph, is_outputs_tuple, is_inputs_tuple)
