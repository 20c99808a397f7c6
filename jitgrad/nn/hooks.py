"""Module hooks: forward pre-hooks, forward hooks and full backward (pre-)hooks.

A module with no hooks calls ``forward`` directly; ``call_with_hooks`` is the slow path.
Backward hooks wrap the module's tensor inputs and outputs in identity autograd functions: the
outputs' node sees ``grad_output`` first, the inputs' node then sees ``grad_input``, and each
lets the hooks replace what it passes on.
"""

from __future__ import annotations

import itertools

from ..autograd.function import Function
from ..autograd.grad_mode import STATE
from ..tensor import Tensor


class RemovableHandle:
    """Returned by the ``register_*_hook`` methods; ``remove()`` takes the hook off again."""

    _ids = itertools.count()

    def __init__(self, hooks: dict, *extra: dict) -> None:
        self.hooks_dict_ref = hooks
        self.extra = extra
        self.id = next(RemovableHandle._ids)

    def remove(self) -> None:
        for store in (self.hooks_dict_ref, *self.extra):
            store.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def _store(module, name: str) -> dict:
    d = module.__dict__
    if name not in d:  # (a module built without Module.__init__, e.g. restored by pickle)
        from collections import OrderedDict

        object.__setattr__(module, name, OrderedDict())
    return d[name]


def add(module, name: str, hook, prepend: bool, *, with_kwargs=False, always=False):
    if not callable(hook):
        raise TypeError(f"hook must be callable, got {type(hook).__name__}")
    hooks = _store(module, name)
    flags = []
    if name in ("_forward_pre_hooks", "_forward_hooks"):
        flags.append(_store(module, name + "_with_kwargs"))
    if name == "_forward_hooks":
        flags.append(_store(module, "_forward_hooks_always_called"))
    handle = RemovableHandle(hooks, *flags)
    hooks[handle.id] = hook
    if prepend:
        hooks.move_to_end(handle.id, last=False)
    if with_kwargs:
        flags[0][handle.id] = True
    if always:
        flags[1][handle.id] = True
    return handle


class HookRegistration:
    """Module's hook registration methods (the hooks run in ``call_with_hooks``)."""

    def register_forward_pre_hook(self, hook, *, prepend: bool = False, with_kwargs: bool = False):
        """``hook(module, args)`` (or ``hook(module, args, kwargs)`` with ``with_kwargs``) runs
        before ``forward``; a value it returns replaces the arguments."""
        return add(self, "_forward_pre_hooks", hook, prepend, with_kwargs=with_kwargs)

    def register_forward_hook(
        self, hook, *, prepend: bool = False, with_kwargs: bool = False, always_call: bool = False
    ):
        """``hook(module, args, output)`` (``hook(module, args, kwargs, output)`` with
        ``with_kwargs``) runs after ``forward``; a value it returns replaces the output."""
        return add(
            self, "_forward_hooks", hook, prepend, with_kwargs=with_kwargs, always=always_call
        )

    def register_full_backward_hook(self, hook, prepend: bool = False):
        """``hook(module, grad_input, grad_output)`` runs when the gradients with respect to
        the module's tensor inputs are computed; a tuple it returns replaces grad_input."""
        return add(self, "_backward_hooks", hook, prepend)

    def register_full_backward_pre_hook(self, hook, prepend: bool = False):
        """``hook(module, grad_output)`` runs when the gradients of the module's outputs are
        known; a tuple it returns replaces grad_output."""
        return add(self, "_backward_pre_hooks", hook, prepend)

    def register_state_dict_pre_hook(self, hook):
        """``hook(module, prefix, keep_vars)`` runs before ``state_dict`` collects this module."""
        return add(self, "_state_dict_pre_hooks", hook, False)

    def register_state_dict_post_hook(self, hook):
        """``hook(module, state_dict, prefix, local_metadata)`` runs after ``state_dict``
        collected this module (and its children); it may edit ``state_dict`` in place."""
        return add(self, "_state_dict_hooks", hook, False)

    def register_load_state_dict_pre_hook(self, hook):
        """``hook(module, state_dict, prefix, local_metadata, strict, missing_keys,
        unexpected_keys, error_msgs)`` runs before ``load_state_dict`` reads this module's keys;
        it may rename keys in ``state_dict`` (a copy of the caller's)."""
        return add(self, "_load_state_dict_pre_hooks", hook, False)

    def register_load_state_dict_post_hook(self, hook):
        """``hook(module, incompatible_keys)`` runs after a successful ``load_state_dict``.
        NOTE: here the load is checked as a whole before anything is written, so a hook cannot
        excuse missing or unexpected keys of a strict load (load with ``strict=False``)."""
        return add(self, "_load_state_dict_post_hooks", hook, False)


def call_with_hooks(module, args: tuple, kwargs: dict):
    d = module.__dict__
    with_kwargs = d.get("_forward_pre_hooks_with_kwargs", {})
    for key, hook in list(d.get("_forward_pre_hooks", {}).items()):
        if key in with_kwargs:
            result = hook(module, args, kwargs)
            if result is not None:
                if not (isinstance(result, tuple) and len(result) == 2):
                    raise RuntimeError(
                        "forward pre-hook must return None or a tuple of (new_args, new_kwargs), "
                        f"but got {result}."
                    )
                args, kwargs = result
        else:
            result = hook(module, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
    state = None
    if d.get("_backward_hooks") or d.get("_backward_pre_hooks"):
        state = _BackwardState(module)
        args = state.wrap_inputs(args)
    forward_hooks = d.get("_forward_hooks", {})
    called = set()
    output = None
    try:
        output = module.forward(*args, **kwargs)
        with_kwargs = d.get("_forward_hooks_with_kwargs", {})
        for key, hook in list(forward_hooks.items()):
            called.add(key)
            if key in with_kwargs:
                result = hook(module, args, kwargs, output)
            else:
                result = hook(module, args, output)
            if result is not None:
                output = result
    except Exception:
        for key in d.get("_forward_hooks_always_called", {}):
            if key not in called and key in forward_hooks:
                try:
                    forward_hooks[key](module, args, output)
                except Exception:
                    pass
        raise
    if state is not None:
        output = state.wrap_outputs(output)
    return output


class _Identity(Function):
    """Passes tensors through unchanged; backward hands the gradients to ``callback``."""

    @staticmethod
    def forward(ctx, callback, *tensors):
        ctx.callback = callback
        ctx.set_materialize_grads(False)
        return tensors

    @staticmethod
    def backward(ctx, *grads):
        return (None, *ctx.callback(grads))


def _differentiable(t) -> bool:
    return isinstance(t, Tensor) and t.requires_grad


class _BackwardState:
    def __init__(self, module) -> None:
        self.module = module
        self.grad_output = None
        self.n_inputs = 0
        self.inputs_wrapped = False

    def wrap_inputs(self, args: tuple) -> tuple:
        at = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
        self.n_inputs = len(at)
        if not STATE.grad_enabled or not any(_differentiable(args[i]) for i in at):
            return args
        self.inputs_wrapped = True
        wrapped = _Identity.apply(self._on_grad_input, *(args[i] for i in at))
        out = list(args)
        for i, t in zip(at, wrapped):
            out[i] = t
        return tuple(out)

    def wrap_outputs(self, output):
        single = isinstance(output, Tensor)
        outs = (output,) if single else output
        if not isinstance(outs, tuple) or not STATE.grad_enabled:
            return output
        at = [i for i, o in enumerate(outs) if _differentiable(o)]
        if not at:
            return output
        wrapped = _Identity.apply(self._on_grad_output, *(outs[i] for i in at))
        out = list(outs)
        for i, t in zip(at, wrapped):
            out[i] = t
        return out[0] if single else tuple(out)

    def _on_grad_output(self, grads: tuple) -> tuple:
        d = self.module.__dict__
        for hook in list(d.get("_backward_pre_hooks", {}).values()):
            result = hook(self.module, grads)
            if result is not None:
                grads = _checked(result, len(grads), "backward pre hook", "grad_output")
        self.grad_output = grads
        if not self.inputs_wrapped:  # no input needs a gradient: the hooks run now
            self._run_hooks((None,) * self.n_inputs)
        return grads

    def _on_grad_input(self, grads: tuple) -> tuple:
        return self._run_hooks(grads)

    def _run_hooks(self, grad_input: tuple) -> tuple:
        for hook in list(self.module.__dict__.get("_backward_hooks", {}).values()):
            result = hook(self.module, grad_input, self.grad_output)
            if result is not None:
                grad_input = _checked(result, len(grad_input), "backward hook", "grad_input")
        self.grad_output = None  # (the graph may outlive the backward pass: keep no gradients)
        return grad_input


def _checked(result, n: int, what: str, name: str) -> tuple:
    result = tuple(result) if isinstance(result, (tuple, list)) else (result,)
    if len(result) != n:
        raise RuntimeError(
            f"Backward hook returned an invalid number of {name}, got {len(result)}, but "
            f"expected {n}; the {what} must return one value (or None) per {name} entry."
        )
    return result
