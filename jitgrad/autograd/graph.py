"""Autograd graph nodes: the backward of a primitive, of a custom Function, and leaf accumulation.

A node's ``_edges`` are fixed when it is created: one ``(node, output_nr)`` per input, or
``None`` for an input that needs no gradient. Leaves that require grad are reached through their
``AccumulateGrad`` node. Tensors keep no reference to the graph above them except ``grad_fn``.
"""

from __future__ import annotations

import itertools
import weakref

_sequence = itertools.count()

SECOND_BACKWARD = (
    "Trying to backward through the graph a second time (or directly access saved tensors after "
    "they have already been freed). Saved intermediate values of the graph are freed when you "
    "call .backward() or autograd.grad(). Specify retain_graph=True if you need to backward "
    "through the graph a second time or if you need to access saved tensors after calling "
    "backward."
)


class RemovableHandle:
    """Returned by ``register_hook``; ``remove()`` takes the hook off again."""

    __slots__ = ("_hooks", "_key")
    _ids = itertools.count()

    def __init__(self, hooks: dict):
        self._hooks = hooks
        self._key = next(RemovableHandle._ids)

    def remove(self) -> None:
        self._hooks.pop(self._key, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


class Node:
    """Base of all backward nodes (PyTorch's ``grad_fn`` objects)."""

    __slots__ = (
        "_seq",
        "_edges",
        "_pre_hooks",
        "_post_hooks",
        "_retained",
        "_trace",
        "__weakref__",
    )

    def __init__(self, edges):
        self._seq = next(_sequence)
        self._edges = edges
        self._pre_hooks = None  # output_nr -> {key: hook(grad) -> grad | None}
        self._post_hooks = None  # {key: hook(grad_inputs, grad_outputs)}
        self._retained = None  # output_nr -> weakref of a tensor that retains its grad
        self._trace = None  # creation stack, kept under detect_anomaly

    def name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return f"<{self.name()} object at {id(self):#x}>"

    @property
    def next_functions(self):
        return tuple((None, 0) if e is None else e for e in self._edges)

    @property
    def metadata(self) -> dict:
        return {}

    def num_outputs(self) -> int:
        return 1

    def _register_tensor_hook(self, output_nr: int, hook) -> RemovableHandle:
        if self._pre_hooks is None:
            self._pre_hooks = {}
        hooks = self._pre_hooks.setdefault(output_nr, {})
        handle = RemovableHandle(hooks)
        hooks[handle._key] = hook
        return handle

    def register_prehook(self, hook) -> RemovableHandle:
        """``hook(grad_outputs) -> grad_outputs | None`` before this node runs."""
        return self._register_tensor_hook(-1, hook)

    def register_hook(self, hook) -> RemovableHandle:
        """``hook(grad_inputs, grad_outputs) -> grad_inputs | None`` after this node runs."""
        if self._post_hooks is None:
            self._post_hooks = {}
        handle = RemovableHandle(self._post_hooks)
        self._post_hooks[handle._key] = hook
        return handle

    # -- what the engine calls -----------------------------------------------------------------
    def backward(self, grads: list) -> tuple:
        raise NotImplementedError

    def release(self) -> None:
        """Drop saved tensors after a backward without ``retain_graph``."""


class _Meta:
    """Shape and dtype of a released input: all that non-saving VJPs read."""

    __slots__ = ("shape", "dtype", "ndim")

    def __init__(self, t):
        self.shape, self.dtype, self.ndim = t.shape, t.dtype, t.ndim


class PrimNode(Node):
    """The backward of one primitive application; the VJP rule comes from the registry."""

    __slots__ = (
        "prim", "inputs", "params", "_out_data", "_out_vc", "_versions", "_freed", "residual",
    )  # fmt: skip

    def __init__(self, prim, inputs, params, edges, out_data, out_vc=None, residual=None):
        self._seq = next(_sequence)
        self._edges = edges
        self._pre_hooks = self._post_hooks = self._retained = self._trace = None
        self.prim = prim
        self.inputs = inputs
        self.params = params
        self.residual = residual
        if prim.save_out:
            self._out_data = out_data
            # the saved output's version counter and version: writing into the output in place
            # (y = x.exp(); y.add_(1)) would change what the VJP reads
            self._out_vc = (out_vc, out_vc[0]) if out_vc is not None else None
        else:
            self._out_data = self._out_vc = None
        saves = prim.saves
        if saves is True:
            self._versions = tuple([t._vc[0] for t in inputs])
        elif saves:  # only these inputs are saved: in-place changes to the others are fine
            self._versions = tuple([t._vc[0] if i in saves else None for i, t in enumerate(inputs)])
        else:
            self._versions = None
        self._freed = False

    @property
    def needs(self) -> tuple:
        """Which inputs want a gradient."""
        return tuple([e is not None for e in self._edges])

    def name(self) -> str:
        return self.prim.node_name

    @property
    def out(self):
        """The primal output, reconnected to this node so create_graph differentiates it."""
        from ..tensor import Tensor

        if self._freed:
            raise RuntimeError(SECOND_BACKWARD)
        return Tensor._wrap(self._out_data, grad_fn=self)

    def _check_saved(self) -> None:
        if self._freed:
            raise RuntimeError(SECOND_BACKWARD)
        if self._out_vc is not None and self._out_vc[0][0] != self._out_vc[1]:
            raise RuntimeError(
                "one of the variables needed for gradient computation has been modified by an "
                f"inplace operation: the output of {self.name()} is at version "
                f"{self._out_vc[0][0]}; expected version {self._out_vc[1]} instead. Hint: the "
                "result of this operation was changed in place after it was used; clone() it "
                "before the in-place update, or enable anomaly detection with "
                "jitgrad.autograd.set_detect_anomaly(True) to find the operation."
            )
        if self._versions is None:
            return
        for i, (t, v) in enumerate(zip(self.inputs, self._versions)):
            if v is not None and t._vc[0] != v:
                kind = {"float32": "Float", "float64": "Double", "int64": "Long"}.get(
                    t.dtype.name, t.dtype.name
                )
                where = (
                    f"output {t._output_nr} of {t._grad_fn.name()}"
                    if t._grad_fn is not None
                    else "a leaf tensor"
                )
                raise RuntimeError(
                    "one of the variables needed for gradient computation has been modified by "
                    f"an inplace operation: [jitgrad.{kind}Tensor {list(t.shape)}], which is "
                    f"{where}, is at version {t._vc[0]}; expected version {v} instead. Hint: "
                    f"input {i} of {self.name()} was changed in place after it was used; "
                    "clone() it before the in-place update, or enable anomaly detection with "
                    "jitgrad.autograd.set_detect_anomaly(True) to find the operation."
                )

    def backward(self, grads):
        if self._freed or self._versions is not None or self._out_vc is not None:
            self._check_saved()
        return self.prim.vjp(self, grads[0])

    def release(self) -> None:
        # Nodes that save nothing PyTorch would keep (add, reshape, sum, ...) keep their inputs
        # (their VJPs read shapes only) and stay usable; the others drop what they saved.
        prim = self.prim
        if prim.saves or prim.save_out or prim.residual:
            self.inputs = tuple(_Meta(t) for t in self.inputs) if not prim.saves else None
            self._out_data = self._out_vc = self.residual = None
            self._freed = True


class AccumulateGrad(Node):
    """Sink for a leaf tensor: adds the incoming gradient into ``variable.grad``."""

    __slots__ = ("_variable", "_post_acc_hooks")

    def __init__(self, variable):
        Node.__init__(self, ())
        self._variable = weakref.ref(variable)
        self._post_acc_hooks = None  # {key: hook(tensor)} once .grad has the new gradient

    def _register_post_accumulate_hook(self, hook) -> RemovableHandle:
        if self._post_acc_hooks is None:
            self._post_acc_hooks = {}
        handle = RemovableHandle(self._post_acc_hooks)
        self._post_acc_hooks[handle._key] = hook
        return handle

    @property
    def variable(self):
        return self._variable()

    def backward(self, grads):  # the engine accumulates; nothing flows further
        return ()


def accumulator(t) -> AccumulateGrad:
    """The (cached) AccumulateGrad node of a leaf tensor."""
    acc = t._acc
    if acc is None:
        acc = t._acc = AccumulateGrad(t)
    return acc


def edge_of(t):
    """The graph edge a gradient for tensor ``t`` flows along, or None if it needs none."""
    fn = t._grad_fn
    if fn is not None:
        return (fn, t._output_nr)
    if t._requires_grad:
        return (accumulator(t), 0)
    return None
