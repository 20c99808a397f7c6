"""The backward engine: an iterative walk of the graph in reverse topological order.

No recursion anywhere (a chain of 100,000 ops is fine). Nodes run when every gradient flowing
into them has arrived; among ready nodes the most recently created runs first, as in PyTorch.
Leaves accumulate into ``.grad`` (in place, or out of place under ``create_graph``); saved
tensors are released after the pass unless ``retain_graph``.
"""

from __future__ import annotations

import heapq

import numpy as np

from .. import dtypes
from ..tensor import Tensor
from .grad_mode import STATE
from .graph import AccumulateGrad, PrimNode, edge_of


def _as_tuple(x):
    if x is None:
        return None
    if isinstance(x, Tensor):
        return (x,)
    return tuple(x)


def _root_grads(outputs, grad_outputs, create_graph):
    grads = []
    for i, out in enumerate(outputs):
        g = grad_outputs[i] if grad_outputs is not None else None
        if g is None:
            if out._data.size != 1:
                raise RuntimeError(
                    "grad can be implicitly created only for scalar outputs: this output has "
                    f"shape {list(out.shape)}. Reduce it first (e.g. out.sum().backward()), or "
                    "pass "
                    "the vector to multiply by: out.backward(gradient=jitgrad.ones_like(out))."
                )
            g = Tensor._wrap(np.ones(out._data.shape, dtype=out._data.dtype))
        else:
            if not isinstance(g, Tensor):
                from ..ops.functions import as_tensor_operand

                g = as_tensor_operand(g)
            if g._data.shape != out._data.shape:
                raise RuntimeError(
                    f"Mismatch in shape: grad_output[{i}] has a shape of {g.shape} and output[{i}] "
                    f"has a shape of {out.shape}. Pass a gradient of the output's shape."
                )
            if g._data.dtype != out._data.dtype:
                from ..ops.functions import cast

                g = cast(g, out.dtype)
            if not create_graph:
                g = g.detach()
        grads.append(g)
    return grads


def _roots(outputs):
    edges = []
    for i, out in enumerate(outputs):
        if not isinstance(out, Tensor):
            raise TypeError(f"outputs must be tensors, got {type(out).__name__} at position {i}")
        e = edge_of(out)
        if e is None:
            raise RuntimeError(
                f"element {i} of tensors does not require grad and does not have a grad_fn. "
                "Make sure an input has requires_grad=True, that the computation did not run "
                "under no_grad(), and that it was not detached."
            )
        edges.append(e)
    return edges


def _priority(node) -> tuple[int, int]:
    """Heap key: gradient accumulation into leaves runs as soon as it is ready (as in PyTorch),
    then the newest node first (reverse creation order is a topological order).

    A leaf's AccumulateGrad node is created once and reused, so its sequence number says when
    the leaf was first used, not where it sits in this graph; ordering it by that number would
    make a retrace record the same step in a different order (and generate different code)."""
    return (0 if type(node) is AccumulateGrad else 1, -node._seq)


def _collect(root_nodes):
    """All nodes reachable from the roots, and how many edges point at each."""
    deps: dict = {}
    seen = set()
    stack = []
    for n in root_nodes:
        if n not in seen:
            seen.add(n)
            stack.append(n)
    while stack:
        node = stack.pop()
        for e in node._edges:
            if e is None:
                continue
            nxt = e[0]
            deps[nxt] = deps.get(nxt, 0) + 1
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen, deps


def _needed(nodes, targets):
    """Nodes from which some target is reachable through at least one edge: only they run.

    A target itself does not run unless another target lies below it: its gradient is captured
    where it arrives, as in PyTorch (so a freed graph further down is never touched).
    """
    needed = set()
    order = []
    stack = [(n, False) for n in nodes]
    visited = set()
    # iterative post-order DFS
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if node in visited:
            continue
        visited.add(node)
        stack.append((node, True))
        for e in node._edges:
            if e is not None and e[0] not in visited:
                stack.append((e[0], False))
    for node in order:
        if any(e is not None and (e[0] in needed or e[0] in targets) for e in node._edges):
            needed.add(node)
    return needed


def _add(a, b):
    return _F().add(a, b)


def _F():
    """The front-end functions module (imported late: it imports this package)."""
    global _functions
    if _functions is None:
        from ..ops import functions

        _functions = functions
    return _functions


_functions = None


def _call_hooks(hooks: dict, grad):
    for hook in list(hooks.values()):
        new = hook(grad)
        if new is not None:
            grad = new
    return grad


# callbacks queued during a backward pass run once its outermost pass has finished
_FINAL_CALLBACKS: list = []
_DEPTH = [0]


def queue_callback(callback) -> None:
    """Run ``callback()`` when the backward pass now running has finished (PyTorch's
    ``Variable._execution_engine.queue_callback``; DistributedDataParallel's reduction)."""
    if _DEPTH[0] == 0:
        raise RuntimeError("Final callbacks can only be installed during backward pass.")
    _FINAL_CALLBACKS.append(callback)


def run_backward(*args, **kwargs):
    """Shared core of ``backward`` and ``grad``; returns captured grads for ``inputs``."""
    _DEPTH[0] += 1
    ok = False
    try:
        results = _run_backward(*args, **kwargs)
        ok = True
    finally:
        _DEPTH[0] -= 1
        if _DEPTH[0] == 0 and not ok:
            _FINAL_CALLBACKS.clear()
    if _DEPTH[0] == 0:
        while _FINAL_CALLBACKS:
            _FINAL_CALLBACKS.pop(0)()
    return results


def _run_backward(
    outputs,
    grad_outputs,
    *,
    retain_graph: bool,
    create_graph: bool,
    inputs=None,
    accumulate: bool = True,
    allow_unused: bool = False,
    materialize_grads: bool = False,
):
    """The pass itself: walk the graph from the roots, accumulate, capture."""
    if STATE.tracer is not None:
        STATE.tracer.on_backward()
    root_edges = _roots(outputs)
    root_grads = _root_grads(outputs, grad_outputs, create_graph)

    # Where to stop and what to capture: (node, output_nr) -> slot in the result
    capture: dict = {}
    if inputs is not None:
        for k, t in enumerate(inputs):
            e = edge_of(t)
            if e is None:
                raise RuntimeError(
                    "One of the differentiated Tensors does not require grad. Set "
                    "requires_grad=True on it, or leave it out of inputs."
                )
            capture.setdefault(e, []).append(k)
    results = [None] * (len(inputs) if inputs is not None else 0)

    nodes, deps = _collect({e[0] for e in root_edges})
    needed = receives = None
    if inputs is not None:
        targets = {e[0] for e in capture}
        needed = _needed(nodes, targets)
        receives = needed | targets

    buffers: dict = {}
    for (node, nr), g in zip(root_edges, root_grads):
        buf = buffers.setdefault(node, {})
        buf[nr] = g if nr not in buf else _add(buf[nr], g)

    ready = []
    for node in {e[0] for e in root_edges}:
        if deps.get(node, 0) == 0:
            heapq.heappush(ready, (_priority(node), node))

    prev_mode = STATE.grad_enabled
    STATE.grad_enabled = create_graph
    executed = []
    try:
        while ready:
            node = heapq.heappop(ready)[1]
            buf = buffers.pop(node, {})
            # tensor hooks and retain_grad see the gradient of each output first
            if node._pre_hooks:
                for nr, hooks in node._pre_hooks.items():
                    if nr in buf and hooks:
                        buf[nr] = _call_hooks(hooks, buf[nr])
            if node._retained:
                for nr, ref in node._retained.items():
                    t = ref()
                    if t is not None and nr in buf:
                        _accumulate(t, buf[nr], create_graph)
            if capture:
                for nr, g in buf.items():
                    slots = capture.get((node, nr))
                    if slots:
                        for k in slots:
                            results[k] = g
            if isinstance(node, AccumulateGrad):
                if accumulate and 0 in buf and (inputs is None or (node, 0) in capture):
                    t = node.variable
                    if t is not None:
                        _accumulate(t, buf[0], create_graph)
                        if node._post_acc_hooks:
                            for hook in list(node._post_acc_hooks.values()):
                                hook(t)
                continue
            if buf and (needed is None or node in needed):
                if type(node) is PrimNode and not node._post_hooks and not STATE.anomaly:
                    grads_in = node.backward((buf.get(0),))  # the common case, inlined
                else:
                    grads_in = _run_node(node, buf, create_graph)
                executed.append(node)
            else:
                grads_in = None
            for i, e in enumerate(node._edges):
                if e is None:
                    continue
                nxt, nr = e
                if grads_in is not None:
                    g = grads_in[i]
                    if g is not None and (receives is None or nxt in receives):
                        b = buffers.setdefault(nxt, {})
                        b[nr] = g if nr not in b else _add(b[nr], g)
                deps[nxt] -= 1
                if deps[nxt] == 0:
                    heapq.heappush(ready, (_priority(nxt), nxt))
    finally:
        STATE.grad_enabled = prev_mode
        if not retain_graph:
            for node in executed:
                node.release()

    if inputs is not None:
        for k, t in enumerate(inputs):
            if results[k] is None:
                if not allow_unused and not materialize_grads:
                    raise RuntimeError(
                        "One of the differentiated Tensors appears to not have been used in the "
                        "graph. Set allow_unused=True if this is the desired behavior."
                    )
                if materialize_grads:
                    results[k] = Tensor._wrap(np.zeros(t._data.shape, dtype=t._data.dtype))
    return results


def _run_node(node, buf: dict, create_graph: bool):
    n_out = node.num_outputs()
    if n_out == 1:
        grads_out = [buf.get(0)]
    else:
        grads_out = [buf.get(i) for i in range(n_out)]
    grads_in = node.backward(grads_out)
    if len(grads_in) != len(node._edges):
        raise RuntimeError(
            f"function {node.name()} returned an incorrect number of gradients (expected "
            f"{len(node._edges)}, got {len(grads_in)})"
        )
    if node._post_hooks:
        for hook in list(node._post_hooks.values()):
            new = hook(grads_in, grads_out)
            if new is not None:
                grads_in = tuple(new)
    if STATE.anomaly and STATE.anomaly_check_nan:
        for i, g in enumerate(grads_in):
            if g is not None and dtypes.is_float_np(g._data.dtype) and np.isnan(g._data).any():
                where = f"\nThe forward call that created it:\n{node._trace}" if node._trace else ""
                raise RuntimeError(
                    f"Function '{node.name()}' returned nan values in its {i}th output.{where}"
                )
    return grads_in


def _accumulate(t: Tensor, g: Tensor, create_graph: bool) -> None:
    """Add ``g`` into ``t.grad``: a fresh buffer first, then in place (out of place with graph)."""
    F = _F()
    if g._data.shape != t._data.shape:
        raise RuntimeError(
            f"gradient of shape {list(g.shape)} does not match tensor of shape {list(t.shape)}"
        )
    if g._data.dtype != t._data.dtype:
        g = F.cast(g, t.dtype)
    old = t._grad
    if STATE.tracer is not None:
        STATE.tracer.read_grad(t, old)
    if create_graph:
        # a copy (recorded: it has a grad_fn when g has one), as g may be shared with other
        # leaves, and the in-place accumulation below must not reach them
        t.grad = F.clone(g) if old is None else F.add(old, g)
        return
    if old is None:
        # a private, contiguous copy: g may be shared with other leaves or a broadcast view
        t.grad = F.clone(g) if STATE.tracer is not None else Tensor._wrap(np.array(g._data))
    elif STATE.tracer is not None:
        t.grad = F.add(old.detach(), g)
    else:
        # in place with grad mode off, as PyTorch: a .grad left by create_graph=True stays the
        # same tensor and keeps its grad_fn, and its version moves
        np.add(old._data, g._data, out=old._data)
        old._vc[0] += 1


def backward(
    tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None, **_
) -> None:
    """Accumulate gradients of ``tensors`` into the leaves' ``.grad``."""
    tensors = _as_tuple(tensors)
    grad_tensors = _as_tuple(grad_tensors)
    if retain_graph is None:
        retain_graph = create_graph
    if inputs is not None:
        inputs = _as_tuple(inputs)
        if not inputs:
            raise RuntimeError("'inputs' argument to backward() cannot be empty.")
    results = run_backward(
        tensors,
        grad_tensors,
        retain_graph=retain_graph,
        create_graph=create_graph,
        inputs=inputs,
        accumulate=True,
        allow_unused=True,
    )
    # backward(inputs=[non_leaf]) fills that tensor's .grad too, as in PyTorch
    for t, g in zip(inputs or (), results):
        if t._grad_fn is not None and g is not None:
            _accumulate(t, g, create_graph)


def grad(
    outputs,
    inputs,
    grad_outputs=None,
    retain_graph=None,
    create_graph=False,
    only_inputs=True,
    allow_unused=None,
    is_grads_batched=False,
    materialize_grads=False,
):
    """Gradients of ``outputs`` with respect to ``inputs`` as a tuple (``.grad`` untouched)."""
    outputs = _as_tuple(outputs)
    inputs = _as_tuple(inputs)
    grad_outputs = _as_tuple(grad_outputs)
    if allow_unused is None:
        allow_unused = materialize_grads
    if retain_graph is None:
        retain_graph = create_graph
    for t in inputs:
        if not isinstance(t, Tensor):
            raise TypeError(f"inputs must be tensors, got {type(t).__name__}")
    results = run_backward(
        outputs,
        grad_outputs,
        retain_graph=retain_graph,
        create_graph=create_graph,
        inputs=inputs,
        accumulate=False,
        allow_unused=allow_unused,
        materialize_grads=materialize_grads,
    )
    if not create_graph:
        results = [None if r is None else r.detach() for r in results]
    return tuple(results)
