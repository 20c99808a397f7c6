"""Tensor and ``apply``, the one dispatch point every primitive application goes through.

``apply(prim, inputs, params)`` runs the primitive eagerly (its NumPy ``impl``), attaches an
autograd node when grad mode is on and an input requires grad, and tells the active tracer (if
any) so the call lands on a tape. Eager mode, autograd and tracing are these three steps, not
three code paths.
"""

from __future__ import annotations

import copy
import traceback
import warnings

import numpy as np

from . import dtypes
from .autograd.grad_mode import STATE
from .autograd.graph import PrimNode, accumulator

_NO_PARAMS: dict = {}
_PARALLEL_MIN = 1 << 18  # (ops.parallel.MIN_ELEMENTS: imported lazily, ops imports this module)


def _parallel(arrays, impl, params):
    from .ops.parallel import elementwise

    return elementwise(impl, arrays, params)


_ndarray = np.ndarray
_is_float = dtypes.is_float_np


def _is_bf16(data) -> bool:
    return data.dtype == dtypes.BFLOAT16_NP


_asarray = np.asarray

NON_LEAF_GRAD_WARNING = (
    "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. Its .grad "
    "attribute won't be populated during autograd.backward(). If you indeed want the .grad field "
    "to be populated for a non-leaf Tensor, use .retain_grad() on the non-leaf Tensor. If you "
    "access the non-leaf Tensor by mistake, make sure you access the leaf Tensor instead."
)


def apply(prim, inputs: tuple, params: dict = _NO_PARAMS) -> Tensor:
    """Apply a primitive: eager result, autograd node if needed, tape equation if tracing."""
    if prim.decompose is not None and STATE.tracer is not None:
        return prim.decompose(*inputs, **params)  # tapes hold core primitives only
    n = len(inputs)
    data = None
    if prim.kind == "elementwise" and inputs:
        d0 = inputs[0]._data  # (a rank-0 constant first: the size is the last input's)
        if d0.size >= _PARALLEL_MIN or (d0.ndim == 0 and inputs[-1]._data.size >= _PARALLEL_MIN):
            data = _parallel([t._data for t in inputs], prim.impl, params)
    if data is not None:
        pass
    elif n == 2:
        data = prim.impl(inputs[0]._data, inputs[1]._data, **params)
    elif n == 1:
        data = prim.impl(inputs[0]._data, **params)
    else:
        data = prim.impl(*[t._data for t in inputs], **params)
    residual = None
    if prim.residual:
        data, residual = data
    if type(data) is not _ndarray:
        data = _asarray(data)
    out = plain_tensor(data)
    # a view only if the result really shares memory (reshape of a non-contiguous input copies)
    if (
        prim.kind == "movement"
        and prim.name != "pad"
        and data.base is not None
        and (prim.name != "reshape" or np.may_share_memory(data, inputs[0]._data))
    ):
        src = inputs[0]
        out._vc = src._vc
        out._base = src if src._base is None else src._base
    # integer and bool results never require grad (e.g. x.long()), as in PyTorch
    if STATE.grad_enabled and prim.differentiable and (data.dtype.kind == "f" or _is_bf16(data)):
        for t in inputs:
            if t._requires_grad:
                _attach_node(prim, inputs, params, out, residual)
                break
    if STATE.tracer is not None:
        STATE.tracer.record(prim, inputs, params, out)
    return out


def plain_tensor(data: np.ndarray) -> Tensor:
    """A tensor around ``data`` with no history (what ``apply`` and compiled calls return);
    unlike ``Tensor._wrap`` it does not tell a tracer, so it stays off the trace's books."""
    t = Tensor.__new__(Tensor)
    t._data = data
    t._grad = t._grad_fn = t._acc = t._base = t._hooks = None
    t._output_nr = 0
    t._requires_grad = t._retains_grad = False
    t._vc = [0]
    return t


def _attach_node(prim, inputs, params, out, residual=None) -> None:
    edges = []
    for t in inputs:
        fn = t._grad_fn
        if fn is not None:
            edges.append((fn, t._output_nr))
        elif t._requires_grad:
            edges.append((t._acc or accumulator(t), 0))
        else:
            edges.append(None)
    node = PrimNode(prim, inputs, params, tuple(edges), out._data, out._vc, residual)
    if STATE.anomaly:
        node._trace = "".join(traceback.format_stack()[:-3])
    out._grad_fn = node
    out._requires_grad = True


def _integral_floats(a: np.ndarray):
    """PyTorch prints a float tensor whose finite values are all whole numbers as ``6.`` and
    ``[1., 2.]`` (its "int mode"), unless their range asks for scientific notation: NumPy's
    formatter for that, elements padded as PyTorch pads them; else None (NumPy's fixed 4-digit
    format)."""
    if a.dtype.kind != "f" or a.size == 0 or a.size > 1000:
        return None
    finite = a[np.isfinite(a)]
    if finite.size and not np.all(finite == np.round(finite)):
        return None
    nonzero = np.abs(finite[finite != 0])
    if nonzero.size and (nonzero.max() > 1e8 or nonzero.max() / nonzero.min() > 1000.0):
        return None
    # the width is the widest nonzero finite value's (zeros, inf and nan are not counted)
    width = max((len(f"{v:.0f}.") for v in finite[finite != 0]), default=1)
    return {"float_kind": lambda v: _int_mode(v).rjust(width)}


def _int_mode(v) -> str:
    return f"{v:.0f}." if np.isfinite(v) else f"{v}"


class Tensor:
    """An n-dimensional array with PyTorch's autograd semantics."""

    __slots__ = (
        "_data",  # np.ndarray
        "_requires_grad",
        "_grad",
        "_grad_fn",
        "_output_nr",
        "_vc",  # version counter, a one-element list shared by views
        "_acc",  # cached AccumulateGrad node of a leaf
        "_base",  # the tensor this one is a view of
        "_retains_grad",
        "_hooks",
        "__weakref__",
    )

    __array_priority__ = 1000  # so ndarray <op> Tensor defers to Tensor

    def __init__(self, data=None, *, dtype=None, requires_grad=False):
        if data is None:
            data = np.zeros((0,), dtype=np.float32)
        if isinstance(data, Tensor):
            data = data._data
        arr = np.array(data, dtype=dtypes.as_dtype(dtype).np if dtype is not None else None)
        if dtype is None and arr.dtype.kind in "fiu" and arr.dtype != np.uint64:
            arr = arr.astype(dtypes.get_default_dtype().np)
        dtypes.from_numpy_dtype(arr.dtype)
        self._data = arr
        self._grad = self._grad_fn = self._acc = self._base = self._hooks = None
        self._output_nr = 0
        self._retains_grad = False
        self._vc = [0]
        self._requires_grad = False
        if requires_grad:
            self.requires_grad_(True)
        if STATE.tracer is not None:
            STATE.tracer.born_tensor(self)

    @classmethod
    def _wrap(cls, data, grad_fn=None, requires_grad=False, vc=None) -> Tensor:
        """A tensor around an existing buffer (no copy)."""
        if type(data) is not _ndarray:
            data = _asarray(data)
        t = cls.__new__(cls)
        t._data = data
        t._grad = t._acc = t._base = t._hooks = None
        t._grad_fn = grad_fn
        t._output_nr = 0
        t._requires_grad = requires_grad or grad_fn is not None
        t._retains_grad = False
        t._vc = [0] if vc is None else vc
        if STATE.tracer is not None:
            STATE.tracer.born_tensor(t)
        return t

    # -- metadata ------------------------------------------------------------------------------
    @property
    def shape(self) -> dtypes.Size:
        return dtypes.Size(self._data.shape)

    def size(self, dim: int | None = None):
        if dim is None:
            return dtypes.Size(self._data.shape)
        return self._data.shape[_wrap_dim(dim, self._data.ndim)]

    @property
    def dtype(self) -> dtypes.dtype:
        return dtypes._BY_NP[self._data.dtype]

    @property
    def device(self) -> dtypes.device:
        return dtypes.CPU

    @property
    def is_cuda(self) -> bool:
        return False

    @property
    def ndim(self) -> int:
        return self._data.ndim

    def dim(self) -> int:
        return self._data.ndim

    def numel(self) -> int:
        return self._data.size

    def nelement(self) -> int:
        return self._data.size

    def element_size(self) -> int:
        return self._data.itemsize

    def is_floating_point(self) -> bool:
        return _is_float(self._data.dtype)

    def is_signed(self) -> bool:
        return self.dtype.is_signed

    def is_contiguous(self) -> bool:
        return bool(self._data.flags.c_contiguous)

    def stride(self, dim: int | None = None):
        strides = tuple(s // self._data.itemsize for s in self._data.strides)
        return strides if dim is None else strides[_wrap_dim(dim, self._data.ndim)]

    @property
    def _version(self) -> int:
        return self._vc[0]

    # -- autograd metadata ---------------------------------------------------------------------
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag: bool) -> None:
        self.requires_grad_(flag)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if self._grad_fn is not None:
            if requires_grad:
                return self
            raise RuntimeError(
                "you can only change requires_grad flags of leaf variables. If you want to use a "
                "computed variable in a subgraph that doesn't require differentiation use "
                "var_no_grad = var.detach()."
            )
        if requires_grad and not _is_float(self._data.dtype):
            raise RuntimeError(
                "only Tensors of floating point and complex dtype can require gradients "
                f"(this one is {self.dtype}); convert it first, e.g. x.float()."
            )
        self._requires_grad = bool(requires_grad)
        return self

    @property
    def is_leaf(self) -> bool:
        return self._grad_fn is None

    @property
    def grad_fn(self):
        return self._grad_fn

    @property
    def output_nr(self) -> int:
        return self._output_nr

    @property
    def grad(self):
        if STATE.tracer is not None and self._grad_fn is None:
            STATE.tracer.read_grad(self, self._grad)
        if self._grad_fn is not None and not self._retains_grad and self._grad is None:
            warnings.warn(NON_LEAF_GRAD_WARNING, UserWarning, stacklevel=2)
        return self._grad

    @grad.setter
    def grad(self, value) -> None:
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(f"assigned grad expected to be a Tensor or None but got {value!r}")
            if value._data.shape != self._data.shape:
                raise RuntimeError(
                    f"assigned grad has data of a different size: the grad has shape "
                    f"{list(value.shape)} but the tensor has shape {list(self.shape)}; "
                    "assign a gradient of the tensor's own shape."
                )
            if value._data.dtype != self._data.dtype:
                raise RuntimeError(
                    f"assigned grad has data of a different type: {value.dtype} vs "
                    f"{self.dtype}; cast it with .to({self.dtype})."
                )
        if STATE.tracer is not None:
            STATE.tracer.set_grad(self, value)
        self._grad = value

    @property
    def retains_grad(self) -> bool:
        return self._retains_grad

    def retain_grad(self) -> None:
        if self._grad_fn is None:
            if not self._requires_grad:
                raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
            return  # leaves always keep their gradient
        if self._retains_grad:
            return
        self._retains_grad = True
        node = self._grad_fn
        if node._retained is None:
            node._retained = {}
        import weakref

        node._retained[self._output_nr] = weakref.ref(self)

    def register_hook(self, hook):
        """Call ``hook(grad)`` when this tensor's gradient is computed; it may return a new one."""
        if not self._requires_grad:
            raise RuntimeError(
                "cannot register a hook on a tensor that doesn't require gradient; call "
                "requires_grad_() on it first."
            )
        if self._grad_fn is None:
            return accumulator(self)._register_tensor_hook(0, hook)
        return self._grad_fn._register_tensor_hook(self._output_nr, hook)

    def register_post_accumulate_grad_hook(self, hook):
        """Call ``hook(tensor)`` on this leaf after a backward pass has added into its
        ``.grad`` (what gradient all-reduces and optimizers-in-backward use)."""
        if not self._requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self._grad_fn is not None:
            raise RuntimeError(
                "post accumulate grad hooks cannot be registered on non-leaf tensors"
            )
        return accumulator(self)._register_post_accumulate_hook(hook)

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        from .autograd.engine import backward

        backward(
            (self,),
            None if gradient is None else (gradient,),
            retain_graph=retain_graph,
            create_graph=create_graph,
            inputs=inputs,
        )

    # -- data access ---------------------------------------------------------------------------
    def _concrete(self, what: str) -> None:
        """Called before Python reads values: a tracer rejects data-dependent control flow."""
        if STATE.tracer is not None:
            STATE.tracer.on_concrete(self, what)

    @property
    def data(self) -> Tensor:
        """The same storage, detached from autograd (and without a shared version counter)."""
        t = Tensor._wrap(self._data)
        if STATE.tracer is not None:
            STATE.tracer.alias(self, t)
        return t

    @data.setter
    def data(self, value: Tensor) -> None:
        if not isinstance(value, Tensor):
            raise TypeError(f"data must be a Tensor, got {type(value).__name__}")
        self._data = value._data

    def item(self):
        self._concrete("item()")
        if self._data.size != 1:
            raise RuntimeError(
                f"a Tensor with {self._data.size} elements cannot be converted to Scalar; "
                "index one element first, e.g. t[0].item(), or reduce with t.sum().item()."
            )
        return self._data.reshape(()).item()

    def tolist(self):
        self._concrete("tolist()")
        return self._data.tolist()

    def numpy(self, *, force: bool = False) -> np.ndarray:
        self._concrete("numpy()")
        if self._requires_grad and not force:
            raise RuntimeError(
                "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() "
                "instead."
            )
        return self._data

    def __array__(self, dtype=None, copy=None):
        arr = self.numpy()
        return arr if dtype is None else arr.astype(dtype)

    def cpu(self) -> Tensor:
        return self

    def __bool__(self) -> bool:
        self._concrete("bool()")
        if self._data.size != 1:
            raise RuntimeError(
                f"Boolean value of Tensor with more than one value is ambiguous (it has "
                f"{self._data.size}); use .any() or .all(), or jitgrad.where for elementwise "
                "choices."
            )
        return bool(self._data)

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self._data.dtype.kind not in "iu" or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __len__(self) -> int:
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __iter__(self):
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._data.shape[0]))

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        shown = self._data
        if shown.dtype == dtypes.BFLOAT16_NP:  # (NumPy formats only its own floats)
            shown = shown.astype(np.float32)
        body = np.array2string(
            shown,
            separator=", ",
            precision=4,
            prefix="tensor(",
            floatmode="fixed",
            max_line_width=81 if shown.ndim == 2 else 80,  # (where PyTorch's 80 wraps)
            formatter=_integral_floats(shown),
        )
        extra = []
        if self._data.dtype != dtypes.get_default_dtype().np and self._data.dtype not in (
            np.int64,
            np.bool_,
        ):
            extra.append(f"dtype={self.dtype}")
        if self._grad_fn is not None:
            extra.append(f"grad_fn=<{self._grad_fn.name()}>")
        elif self._requires_grad:
            extra.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extra) + ")"

    # -- autograd-aware copies -----------------------------------------------------------------
    def detach(self) -> Tensor:
        """A tensor sharing storage and version counter, cut from the graph."""
        t = Tensor._wrap(self._data, vc=self._vc)
        t._base = self if self._base is None else self._base
        if STATE.tracer is not None:
            STATE.tracer.alias(self, t)
        return t

    def detach_(self) -> Tensor:
        self._grad_fn = None
        self._requires_grad = False
        return self

    def __deepcopy__(self, memo: dict) -> Tensor:
        """A new leaf with copied data (and a copied ``.grad``), as PyTorch does.

        Graph state is never copied: a copied AccumulateGrad node would still point at the
        original tensor, so the copy's gradients would land in the original."""
        if self._grad_fn is not None:
            raise RuntimeError(
                "Only Tensors created explicitly by the user (graph leaves) support the deepcopy "
                "protocol at the moment. Call .detach() first to copy its value."
            )
        t = type(self)._wrap(np.array(self._data, copy=True), requires_grad=self._requires_grad)
        memo[id(self)] = t
        if self._grad is not None:
            t._grad = copy.deepcopy(self._grad, memo)
        return t


def _wrap_dim(dim: int, ndim: int) -> int:
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(
            f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {dim})"
        )
    return dim % n if ndim else 0


# -- in-place updates ------------------------------------------------------------------------------
_TYPE_NAMES = dtypes.TYPE_NAMES
LEAF_INPLACE = "a leaf Variable that requires grad is being used in an in-place operation."


def inplace(x: Tensor, compute) -> Tensor:
    """Update ``x`` in place to ``compute(value_of_x)``, computed out of place with ops.

    The old value keeps its place in the autograd graph (a snapshot stands in for it when a graph
    is being recorded), the new value is written into ``x``'s buffer so views and ``.data``
    aliases see it, the version counter moves, and a tracer records the write.
    """
    src = x
    if STATE.grad_enabled and x._requires_grad:
        if x._grad_fn is None:
            raise RuntimeError(
                LEAF_INPLACE + " Update it inside `with jitgrad.no_grad():` (as optimizers do), "
                "or work on a clone()."
            )
        base = x._base
        if base is not None and base._requires_grad and base._grad_fn is None:
            raise RuntimeError(
                "a view of a leaf Variable that requires grad is being used in an in-place "
                "operation. Update the leaf itself inside `with jitgrad.no_grad():`, or work on "
                "a clone()."
            )
        if base is not None and base._requires_grad:
            from .ops.views import inplace_view

            return inplace_view(x, base, compute)
        src = Tensor._wrap(x._data.copy(), grad_fn=x._grad_fn)
        src._output_nr = x._output_nr
        if STATE.tracer is not None:
            STATE.tracer.snapshot(x, src)
    new = compute(src)
    if src is not x and not new._requires_grad:
        # a value without history (fill_, copy_ of a constant) written into a tensor inside a
        # graph: x stays in the graph, and its old value gets a zero gradient from here on
        from .ops.functions import const, where

        new = where(const(True, dtypes.bool_), new, src)
    if src is x and new._requires_grad and STATE.grad_enabled:
        # x was outside the graph but its new value has history (buf.mul_(w)): the ops may have
        # saved x itself, whose buffer is about to change, so redo them on a snapshot (rare)
        src = Tensor._wrap(x._data.copy())
        if STATE.tracer is not None:
            STATE.tracer.snapshot(x, src)
        new = compute(src)
    base = x._base
    if (
        base is not None
        and new._requires_grad
        and STATE.grad_enabled
        and not base._requires_grad
        and x._data is not base._data
    ):
        # a view of a plain tensor receives a value with history: the base joins the graph
        from .ops.views import inplace_view

        return inplace_view(x, base, lambda _: new)
    write(x, new)
    return x


def write(x: Tensor, new: Tensor) -> None:
    """Store ``new``'s values in ``x``'s buffer (shape and dtype checked first)."""
    check_write(x, new)
    xd, nd = x._data, new._data
    np.copyto(xd, nd, casting="unsafe")
    x._vc[0] += 1
    if new._requires_grad and STATE.grad_enabled:
        x._grad_fn = new._grad_fn
        x._output_nr = new._output_nr
        x._requires_grad = True
    if STATE.tracer is not None:
        STATE.tracer.write(x, new)


def check_write(x: Tensor, new: Tensor) -> None:
    """Refuse a write that cannot happen, before anything changes."""
    xd, nd = x._data, new._data
    if nd.shape != xd.shape:
        raise RuntimeError(
            f"output with shape {list(xd.shape)} doesn't match the broadcast shape "
            f"{list(nd.shape)}; in-place ops cannot change a tensor's shape, use the "
            "out-of-place op instead."
        )
    if nd.dtype != xd.dtype and new.dtype.category > x.dtype.category:
        got = dtypes.type_name(new.dtype)
        want = dtypes.type_name(x.dtype)
        raise RuntimeError(
            f"result type {got} can't be cast to the desired output type {want}; convert the "
            "tensor first (e.g. x = x.float()) or use the out-of-place op."
        )
    if not xd.flags.writeable:
        raise RuntimeError(
            "unsupported operation: more than one element of the written-to tensor refers to a "
            "single memory location. Please clone() the tensor before performing the operation."
        )
