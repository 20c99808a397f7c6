"""Custom differentiable functions: ``class F(Function)`` with static forward/backward."""

from __future__ import annotations

import numpy as np

from .. import dtypes
from ..tensor import Tensor
from .grad_mode import STATE, no_grad
from .graph import SECOND_BACKWARD, Node, edge_of


class FunctionCtx:
    """The ``ctx`` passed to forward and backward."""

    def __init__(self):
        self._saved = None
        self._saved_versions = None
        self._freed = False
        self.needs_input_grad = ()
        self._non_differentiable = set()
        self._dirty = set()
        self.materialize_grads = True

    def save_for_backward(self, *tensors) -> None:
        for t in tensors:
            if t is not None and not isinstance(t, Tensor):
                raise TypeError(
                    f"save_for_backward can only save tensors (or None), got {type(t).__name__}; "
                    "store other values as attributes of ctx."
                )
        self._saved = tensors
        self._saved_versions = tuple(None if t is None else t._vc[0] for t in tensors)

    @property
    def saved_tensors(self) -> tuple:
        if self._freed:
            raise RuntimeError(SECOND_BACKWARD)
        if self._saved is None:
            return ()
        for i, (t, v) in enumerate(zip(self._saved, self._saved_versions)):
            if t is not None and t._vc[0] != v:
                raise RuntimeError(
                    "one of the variables needed for gradient computation has been modified by an "
                    f"inplace operation: saved tensor {i} of shape {list(t.shape)} is at version "
                    f"{t._vc[0]}; expected version {v} instead. clone() it before changing it."
                )
        return self._saved

    def mark_non_differentiable(self, *tensors) -> None:
        self._non_differentiable.update(id(t) for t in tensors)

    def mark_dirty(self, *tensors) -> None:
        self._dirty.update(id(t) for t in tensors)

    def set_materialize_grads(self, value: bool) -> None:
        self.materialize_grads = bool(value)


class BackwardCFunction(Node):
    """The graph node of one ``Function.apply`` call."""

    __slots__ = ("_cls", "ctx", "_out_meta")

    def __init__(self, cls, ctx, edges, out_meta):
        Node.__init__(self, edges)
        self._cls = cls
        self.ctx = ctx
        self._out_meta = out_meta  # (shape, np dtype) per output, None for non-tensors

    def name(self) -> str:
        return f"{self._cls.__name__}Backward"

    def num_outputs(self) -> int:
        return len(self._out_meta)

    def backward(self, grads):
        ctx = self.ctx
        if ctx._freed:
            raise RuntimeError(SECOND_BACKWARD)
        if ctx.materialize_grads:
            grads = [
                Tensor._wrap(np.zeros(m[0], m[1])) if g is None and m is not None else g
                for g, m in zip(grads, self._out_meta)
            ]
        result = self._cls.backward(ctx, *grads)
        if not isinstance(result, tuple):
            result = (result,)
        n = len(self._edges)
        if len(result) != n:
            if len(result) > n and all(r is None for r in result[n:]):
                result = result[:n]
            else:
                raise RuntimeError(
                    f"function {self.name()} returned an incorrect number of gradients (expected "
                    f"{n}, got {len(result)}): backward must return one value per forward input, "
                    "None for inputs without a gradient."
                )
        out = []
        for i, (g, e) in enumerate(zip(result, self._edges)):
            if g is None or e is None:
                out.append(None)
                continue
            if not isinstance(g, Tensor):
                raise TypeError(
                    f"function {self.name()} returned a {type(g).__name__} as gradient {i}; "
                    "return a Tensor or None."
                )
            out.append(g)
        return tuple(out)

    def release(self) -> None:
        self.ctx._freed = True
        self.ctx._saved = None


class Function:
    """Subclass with ``forward(ctx, *args)`` and ``backward(ctx, *grads)`` static methods and
    call ``MyFunction.apply(*args)``."""

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError(
            "You must implement the forward function for custom autograd.Function."
        )

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError(
            "You must implement either the backward or vjp method for your custom "
            "autograd.Function to use it with backward mode AD."
        )

    vjp = backward

    @classmethod
    def apply(cls, *args, **kwargs):
        ctx = FunctionCtx()
        ctx.needs_input_grad = tuple(
            isinstance(a, Tensor) and a._requires_grad and STATE.grad_enabled for a in args
        )
        setup = getattr(cls, "setup_context", None)
        with no_grad():
            if setup is not None and setup is not Function.setup_context:
                outputs = cls.forward(*args, **kwargs)
                setup(ctx, args, outputs)
            else:
                outputs = cls.forward(ctx, *args, **kwargs)
        single = not isinstance(outputs, tuple)
        outs = (outputs,) if single else outputs
        if any(ctx.needs_input_grad):
            edges = tuple(edge_of(a) if isinstance(a, Tensor) else None for a in args)
            meta = tuple(
                (o._data.shape, o._data.dtype) if isinstance(o, Tensor) else None for o in outs
            )
            node = BackwardCFunction(cls, ctx, edges, meta)
            if STATE.anomaly:
                import traceback

                node._trace = "".join(traceback.format_stack()[:-1])
            arg_ids = {id(a) for a in args if isinstance(a, Tensor)}
            new_outs = []
            for i, o in enumerate(outs):
                if isinstance(o, Tensor) and id(o) not in ctx._non_differentiable:
                    if dtypes.is_float_np(o._data.dtype):
                        if id(o) in arg_ids and id(o) not in ctx._dirty:
                            o = Tensor._wrap(o._data, vc=o._vc)  # an input returned as is
                        o._grad_fn, o._output_nr, o._requires_grad = node, i, True
                new_outs.append(o)
            outs = tuple(new_outs)
        return outs[0] if single else outs

    @staticmethod
    def setup_context(ctx, inputs, output):
        """Optional: forward(*args) without ctx, and this fills ctx from inputs and output."""


ONCE_DIFFERENTIABLE = (
    "trying to differentiate twice a function that was marked with @once_differentiable"
)


class DelayedError(Node):
    """Stands behind the gradients of a once_differentiable backward: differentiating them
    again raises (PyTorch's DelayedError), instead of silently giving a wrong answer."""

    __slots__ = ("_n",)

    def __init__(self, n: int):
        Node.__init__(self, ())
        self._n = n

    def num_outputs(self) -> int:
        return self._n

    def backward(self, grads):
        raise RuntimeError(
            ONCE_DIFFERENTIABLE + "; write its backward with jitgrad ops (without "
            "@once_differentiable) to make it twice differentiable."
        )


class once_differentiable:  # noqa: N801
    """Decorator for a backward that is not itself differentiable: it runs without building a
    graph, and under create_graph its results raise when something differentiates them."""

    def __new__(cls, fn):
        def wrapper(ctx, *grads):
            with no_grad():
                outputs = fn(ctx, *grads)
            if not STATE.grad_enabled or not any(
                isinstance(g, Tensor) and g._requires_grad for g in grads
            ):
                return outputs
            single = not isinstance(outputs, tuple)
            outs = (outputs,) if single else outputs
            node = DelayedError(len(outs))
            wrapped = []
            for i, o in enumerate(outs):
                if isinstance(o, Tensor) and dtypes.is_float_np(o._data.dtype):
                    o = Tensor._wrap(o._data, grad_fn=node)
                    o._output_nr = i
                wrapped.append(o)
            return wrapped[0] if single else tuple(wrapped)

        return wrapper
