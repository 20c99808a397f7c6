"""Host-side plumbing of compiled calls: argument pytrees and cache keys, fetching inputs,
applying writes, wrapping results, and the generated straight-line runner of a cached step."""

from __future__ import annotations

import builtins
import functools

import numpy as np

from .backends.numba_cpu import IN_PLACE
from .ir.tape import Binding
from .tensor import Tensor, plain_tensor


def _flatten(obj, leaves: list):
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return (type(obj), tuple(_flatten(x, leaves) for x in obj))
    if isinstance(obj, tuple):  # namedtuple
        return (type(obj), tuple(_flatten(x, leaves) for x in obj))
    if isinstance(obj, dict):
        keys = tuple(obj)
        return (dict, keys, tuple(_flatten(obj[k], leaves) for k in keys))
    leaves.append(obj)
    return None


def _unflatten(tree, leaves):
    return _build(tree, iter(leaves))


def _build(t, it):
    # a module-level function: a recursive closure would be a reference cycle per call
    if t is None:
        return next(it)
    if t[0] is dict:
        return {k: _build(s, it) for k, s in zip(t[1], t[2])}
    items = [_build(s, it) for s in t[1]]
    kind = t[0]
    if kind in (list, tuple):
        return kind(items)
    return kind(*items)


_CONTAINERS = (list, tuple, dict)


@functools.lru_cache(maxsize=64)
def _flat_tree(n: int):
    """The tree of ``(args, {})`` for ``n`` positional leaves (what _flatten would build)."""
    return (tuple, ((tuple, (None,) * n), (dict, (), ())))


def _describe(key) -> str:
    """A leaf's cache key for people: ``float32(4, 3)`` or the baked value."""
    if len(key) == 3 and isinstance(key[0], tuple):
        return f"{key[1]}{key[0]}" + (" requires_grad" if key[2] else "")
    return repr(key[-1])


# Types whose values _leaf_key keys by identity ("o"): the key depends on the type alone, so
# compiled calls remember these types and skip the type tests for them.
_OPAQUE: set = set()


def _leaf_key(x):
    if type(x) is Tensor:
        return (x._data.shape, x._data.dtype, x._requires_grad)
    if isinstance(x, Tensor):
        return ("T", x._data.shape, x._data.dtype.str, x._requires_grad)
    if isinstance(x, float):
        return ("f",)
    if isinstance(x, (bool, int, str, type(None))):
        return ("s", type(x), x)
    return ("o", id(x))


def _grad_owner(binding: Binding, leaves: list):
    """The tensor whose ``.grad`` a grad binding names: a captured one (``ref``), or whichever
    tensor this call passes at argument position ``key``."""
    return binding.ref if binding.key is None else leaves[binding.key]


def _fetch(binding: Binding, leaves: list):
    kind = binding.kind
    if kind == "arg":
        return leaves[binding.key]._data
    if kind == "capture":
        return binding.ref._data
    if kind == "scalar":
        return np.asarray(leaves[binding.key], dtype=np.float64)
    if kind == "hyper":
        return np.asarray(binding.ref(), dtype=np.float64)
    if kind == "grad":
        return _grad_owner(binding, leaves)._grad._data
    raise AssertionError(f"cannot fetch a {kind} input")


def _tree_source(tree, counter: list) -> str:
    """Python source rebuilding an output tree from ``outs`` (see _flatten)."""
    if tree is None:
        counter[0] += 1
        return f"_result(outs[{counter[0] - 1}])"
    if tree[0] is dict:
        items = ", ".join(f"{k!r}: {_tree_source(s, counter)}" for k, s in zip(tree[1], tree[2]))
        return "{" + items + "}"
    parts = [_tree_source(s, counter) for s in tree[1]]
    if tree[0] is tuple:
        return "(" + "".join(p + ", " for p in parts) + ")"
    if tree[0] is list:
        return "[" + ", ".join(parts) + "]"
    return f"_kinds[{id(tree[0])}](" + ", ".join(parts) + ")"


MISS = object()  # what a runner returns when a guard fails: try the next entry, or retrace


def _guard_source(i: int, guard, ns: dict) -> str:
    """A condition that holds when the guard does: the one definition of what each kind of
    guard checks, for runners and for ``guard_check``."""
    kind, t, meta = guard
    if meta == "arg":  # a .grad guard on whichever tensor this call passes at position t
        g = f"leaves[{t}]"
    else:
        g = f"_g{i}"
        ns[g] = t
    if kind == "capture":
        ns[f"_m{i}"] = meta
        return f"(_g{i}._data.shape, _g{i}._data.dtype) == _m{i}"
    if kind == "grad_none":
        return f"{g}._grad is None"
    if kind == "grad_like":
        return f"{g}._grad is not None and {g}._grad._data.shape == {g}._data.shape"
    if kind == "option":
        ns[f"_o{i}"] = meta[1]
        return f"_g{i}.get({meta[0]!r}) == _o{i}"
    if kind == "option_test":  # (Optimizer._option_test): the answer, not the value
        test = {"nonzero": "!= 0", "positive": "> 0"}[meta[1]]
        return f"((_g{i}.get({meta[0]!r}) {test}) == {bool(meta[2])!r})"
    raise ValueError(f"unknown guard kind {kind!r}")


def guard_check(guards: list):
    """A function of the call's leaves telling whether all ``guards`` hold."""
    ns: dict = {}
    conds = [_guard_source(i, g, ns) for i, g in enumerate(guards)] or ["True"]
    exec(f"def check(leaves):\n    return {' and '.join(conds)}\n", ns)  # noqa: S102
    return ns["check"]


def _make_runner(entry, slow):
    """Straight-line host code for one cached whole-step call: check the guards, fetch the
    inputs, run, apply the writes, wrap the outputs - no per-call interpretation of bindings
    or guards. Returns ``MISS`` when a guard fails. An executable that offers ``direct_call``
    source is called inline; ``slow(leaves)`` handles what that code can't."""
    tape = entry.tape
    ns = {
        "np": np,
        "_result": _result,
        "_grad_write": _grad_write,
        "_IN_PLACE": IN_PLACE,
        "_MISS": MISS,
        "_exe": entry.exe,
        "_kinds": {},
        "_slow": slow,
    }
    direct = entry.exe.direct_call
    # Captured tensors' buffers are checked by identity with the last call's (their shape and
    # dtype guards then hold, and their flat views are reused); only a new buffer is checked.
    captured = {id(b.ref) for b in tape.bindings.values() if b.kind == "capture"}
    guards = [g for g in entry.guards if direct is None or id(g[1]) not in captured]
    conds = [_guard_source(i, g, ns) for i, g in enumerate(guards)]
    lines = ["def run(leaves):"]
    if conds:
        lines += [f"    if not ({' and '.join(conds)}):", "        return _MISS"]
    fetch, stable, numbers = [], {}, {}
    for j, v in enumerate(tape.inputs):
        b = tape.bindings[v]
        if b.kind == "arg":
            fetch.append(f"leaves[{b.key}]._data")
        elif b.kind == "capture":
            ns[f"_c{j}"] = b.ref
            fetch.append(f"_c{j}._data")
            stable[j] = (tuple(v.shape), v.dtype.np)
        elif b.kind == "grad" and b.key is not None:
            fetch.append(f"leaves[{b.key}]._grad._data")
        elif b.kind == "grad":
            ns[f"_c{j}"] = b.ref
            fetch.append(f"_c{j}._grad._data")
        elif b.kind == "hyper":
            ns[f"_h{j}"] = b.ref
            numbers[j] = f"_h{j}()"
            fetch.append(f"np.asarray(_h{j}(), np.float64)")
        elif b.kind == "scalar":
            numbers[j] = f"leaves[{b.key}]"
            fetch.append(f"np.asarray(leaves[{b.key}], np.float64)")
        else:
            return None
    if direct is not None:
        body, out_exprs, write_exprs = direct(fetch, ns, stable, numbers)
        lines += body
        lines.append(f"    outs = [{', '.join(out_exprs)}]")
    else:
        lines.append(f"    outs, writes = _exe([{', '.join(fetch)}])")
        out_exprs = []
        write_exprs = [f"writes[{w}]" for w in range(len(tape.writes))]
    # a fresh array of the driver's, given to one .grad only, needs no checks or copies
    grad_values = [write_exprs[w] for w, (b, _) in enumerate(tape.writes) if b.kind == "grad"]
    own = {
        x
        for x in grad_values
        if x.startswith("fresh[") and grad_values.count(x) == 1 and x not in out_exprs
    }
    if len(own) < len(grad_values):
        lines.append("    given = set()")
    for w, (b, _) in enumerate(tape.writes):
        ns[f"_w{w}"] = b.ref
        value = write_exprs[w]
        if b.kind == "grad":
            leaf = f"_w{w}" if b.key is None else f"leaves[{b.key}]"
            if value in own:
                lines.append(f"    {leaf}._grad = _result({value})")
            else:
                lines.append(f"    _grad_write({leaf}, {value}, given)")
            continue
        target = f"leaves[{b.key}]" if b.kind == "arg" else f"_w{w}"
        if value != "_IN_PLACE":
            lines.append(f"    value = {value}")
            lines.append("    if value is not _IN_PLACE:")
            lines.append(f"        np.copyto({target}._data, value, casting='unsafe')")
        lines.append(f"    {target}._vc[0] += 1")
    lines.append("    return " + _tree_source(entry.out_tree, [0]))
    tree = entry.out_tree
    stack = [tree]
    while stack:  # namedtuple output types, looked up by id in the generated code
        t = stack.pop()
        if t is None:
            continue
        if t[0] is dict:
            stack.extend(t[2])
            continue
        ns["_kinds"][id(t[0])] = t[0]
        stack.extend(t[1])
    lock = entry.exe.lock
    if lock is not None:  # one call at a time: the driver's workspace is the executable's
        ns["_acquire"], ns["_release"] = lock.acquire, lock.release
        body = ["        " + line[4:] for line in lines[1:]]
        lines = [lines[0], "    _acquire()", "    try:", *body]
        lines += ["    finally:", "        _release()"]
    source = "\n".join(lines) + "\n"
    code = builtins.compile(source, f"<jitgrad runner {tape.name}>", "exec")
    exec(code, ns)  # noqa: S102
    run = ns["run"]
    run.source = source
    return run


def _grad_write(leaf, arr, given: set) -> None:
    if arr is None:
        leaf._grad = None
        return
    if id(arr) in given or not arr.flags.writeable or not arr.flags.c_contiguous:
        arr = np.array(arr)
    given.add(id(arr))
    leaf._grad = _result(arr)


_result = plain_tensor  # the result tensors of every compiled call


def _apply_writes(writes, values, leaves) -> None:
    given = set()  # arrays already handed to a .grad: a second leaf gets its own copy
    for (binding, _), arr in zip(writes, values):
        kind = binding.kind
        if arr is IN_PLACE:  # the backend already wrote into the captured buffer
            binding.ref._vc[0] += 1
            continue
        if kind == "grad":
            leaf = _grad_owner(binding, leaves)
            if arr is None:
                leaf._grad = None
            else:
                if id(arr) in given or not arr.flags.writeable or not arr.flags.c_contiguous:
                    arr = np.array(arr)
                given.add(id(arr))
                leaf._grad = _result(arr)
            continue
        target = binding.ref if kind == "capture" else leaves[binding.key]
        np.copyto(target._data, arr, casting="unsafe")
        target._vc[0] += 1
