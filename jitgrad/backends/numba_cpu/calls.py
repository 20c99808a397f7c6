"""The call path of a Numba executable: binding inputs' buffers, the arrays a call returns
(outputs and new ``.grad`` arrays, views into fresh blocks), and the two ways to call it:
``exe(inputs)`` and the straight-line host code ``direct_call`` generates for a whole step.
A mixin of ``Executable``.
"""

from __future__ import annotations

import functools

import numpy as np

from .codegen import numel
from .decompositions import raise_failures

IN_PLACE = object()  # a write the executable already did in place


class CallingMixin:
    """``Executable``'s call path (see the module docstring)."""

    def bind(self, i: int, flat: np.ndarray) -> None:
        """Store the address of input ``i``'s flat buffer in its slot (for inputs whose
        buffers stay from call to call; the caller keeps ``flat`` alive while it is bound)."""
        s = self.slot_of["input", i]
        self.table[2 * s], self.table[2 * s + 1] = flat.ctypes.data, flat.size

    # -- calling -------------------------------------------------------------------------------
    def _value_plans(self) -> tuple:
        """Where each output and each write comes from after a driver call: ``(kind, key, var)``
        with kind ``none``, ``in_place`` (already written), ``fresh`` (a driver result),
        ``work`` (a workspace array, copied out), ``input`` (copied) or ``const`` (copied)."""
        tape = self.tape
        pos = {v: i for i, v in enumerate(tape.inputs)}
        fresh_pos = {v: i for i, v in enumerate(self.fresh)}
        work = {v: a for v, a in zip(self.workspace, self.work_arrays)}

        def plan(v):
            if v is None:
                return ("none", None, None)
            if v in self.in_place:
                return ("in_place", None, v)
            if v in fresh_pos:
                return ("fresh", fresh_pos[v], v)
            if v in work:
                return ("work", work[v], v)
            if v in pos:
                return ("input", pos[v], v)
            return ("const", np.array(tape.consts[v]), v)

        return [plan(v) for v in tape.outputs], [plan(v) for _, v in tape.writes]

    def new_fresh(self) -> tuple:
        """New blocks, and the flat views into them that a call's outputs and ``.grad`` values
        are (the kernels fill them)."""
        blocks = [np.empty(n, dt) for n, dt in self.blocks]
        return blocks, [blocks[b][at : at + n] for (b, at), n in zip(self.fresh_at, self._sizes)]

    def _prepare_call(self) -> None:
        """One getter per output and write (from ``_value_plans``), so a call does no lookups."""
        pos = {v: i for i, v in enumerate(self.tape.inputs)}
        self._in_place_inputs = {pos[t] for t in self.in_place.values()}

        def getter(plan):
            kind, key, v = plan
            if kind == "none":
                return None
            if kind == "in_place":
                return IN_PLACE
            shape = v.shape
            if kind == "fresh":
                return lambda flats, fresh: fresh[key].reshape(shape)
            if kind == "work":
                return lambda flats, fresh: key.reshape(shape).copy()
            if kind == "input":
                return lambda flats, fresh: flats[key].reshape(shape).copy()
            return lambda flats, fresh: key.copy()

        outs, writes = self._value_plans()
        self._out_get = [getter(p) for p in outs]
        self._write_get = [getter(p) for p in writes]
        self._args_tail = (self.table, self.program)
        self._sizes = [numel(v.shape) for v in self.fresh]

    def direct_call(self, fetch: list, ns: dict, stable: dict, numbers: dict):
        """Source for calling the driver inline from generated host code: statements, and one
        expression per output and per write (``"_IN_PLACE"`` for writes already done).

        ``stable`` maps input positions to the (shape, dtype) of buffers that usually stay the
        same object from call to call (captured tensors): the code keeps their flat views and
        checks only identity; a new buffer is checked against that shape and dtype (``_MISS``
        when it differs) and, when C-contiguous, becomes the one kept. ``numbers`` maps input
        positions to expressions of Python numbers (hyperparameters, float arguments): each
        call writes them into a float64 buffer of one element that the code keeps (calls of an
        executable take turns, so one buffer serves them all)."""
        ns["_drv"], ns["_tail"] = self.driver, self._args_tail
        ns["_bind"] = functools.partial(_bind, ns, self)
        ns["_check_index"] = _check_index
        checked = dict(self.index_checks)
        lines = []
        for i, f in enumerate(fetch):
            if i in numbers:
                ns[f"_n{i}"] = np.empty(1, np.float64)
                self.bind(i, ns[f"_n{i}"])
                lines += [f"    _n{i}[0] = {numbers[i]}"]
                continue
            lines.append(f"    a{i} = {f}")
            if i in checked:
                lines.append(f"    _check_index(a{i}, {checked[i]})")
            if i in stable:
                ns[f"_d{i}"], ns[f"_m{i}"], ns[f"_f{i}"] = None, stable[i], None
                lines += [
                    f"    if a{i} is _d{i}:",
                    f"        v{i} = _f{i}",
                    "    else:",
                    f"        v{i} = _bind({i}, a{i})",
                    f"        if v{i} is None:",
                    "            return _MISS",
                ]
        if sorted([*stable, *numbers]) != self.kept:
            raise ValueError("direct_call: the kept inputs differ from the tape's bindings")
        moving = self.moving
        cond = [f"a{i}.flags.c_contiguous" for i in moving] + [f"v{i} is not False" for i in stable]
        if cond:  # a non-contiguous input takes the general path
            lines += [f"    if not ({' and '.join(cond)}):", "        return _slow(leaves)"]
        # (a contiguous 1-D input is its own flat view)
        one_d = {i for i, v in enumerate(self.tape.inputs) if v.ndim == 1}
        flat = "".join(f"a{i}, " if i in one_d else f"a{i}.reshape(-1), " for i in moving)
        ns["_empty"] = np.empty
        for b, (n, dt) in enumerate(self.blocks):  # (new_fresh, inline)
            ns[f"_bt{b}"] = dt
            lines.append(f"    _b{b} = _empty({n}, _bt{b})")
        views = [f"_b{b}[{at}:{at + n}]" for (b, at), n in zip(self.fresh_at, self._sizes)]
        lines.append(f"    fresh = [{', '.join(views)}]")
        blocks = "".join(f"_b{b}, " for b in range(len(self.blocks)))
        lines.append(f"    _drv({flat}{blocks}*_tail)")
        if self.status_checks:  # (a linear algebra kernel's failure, raised after the call)
            ns["_failures"] = functools.partial(raise_failures, self.status_checks)
            lines.append("    _failures()")

        def expr(plan):
            kind, key, v = plan
            if kind == "none":
                return "None"
            if kind == "in_place":
                return "_IN_PLACE"
            if kind == "fresh":  # (the driver's fresh arrays are flat)
                return f"fresh[{key}]" if v.ndim == 1 else f"fresh[{key}].reshape({v.shape!r})"
            if kind == "input":
                return f"a{key}.reshape({v.shape!r}).copy()"
            ns[f"_v{v.id}"] = key  # a workspace array or a constant
            suffix = f".reshape({v.shape!r}).copy()" if kind == "work" else ".copy()"
            return f"_v{v.id}{suffix}"

        outs, writes = self._value_plans()
        return lines, [expr(p) for p in outs], [expr(p) for p in writes]

    def __call__(self, inputs: list):
        with self.lock:
            return self._call(inputs)

    def _call(self, inputs: list):
        for i, n in self.index_checks:
            _check_index(inputs[i], n)
        flats = []
        copied = None
        for a in inputs:
            if a.flags.c_contiguous:
                flats.append(a.reshape(-1))
            else:
                if copied is None:
                    copied = []
                copied.append((len(flats), a))
                flats.append(np.ascontiguousarray(a).reshape(-1))
        blocks, fresh = self.new_fresh()
        bound = self.table.copy()  # (the kept inputs' addresses, restored after)
        for i in self.kept:
            self.bind(i, flats[i])
        try:
            self.driver(*[flats[i] for i in self.moving], *blocks, *self._args_tail)
        finally:
            self.table[:] = bound
        self._last_call = (flats, fresh)
        if self.status_checks:
            raise_failures(self.status_checks)
        if copied:  # a non-contiguous captured buffer written in place: copy the result back
            for i, original in copied:
                if i in self._in_place_inputs:
                    np.copyto(original, flats[i].reshape(original.shape))
        outs = [g(flats, fresh) for g in self._out_get]
        writes = [g if g is None or g is IN_PLACE else g(flats, fresh) for g in self._write_get]
        return outs, writes


def _check_index(a: np.ndarray, n: int) -> None:
    if a.size and (a.min() < -n or a.max() >= n):
        bad = a[(a < -n) | (a >= n)].flat[0]
        raise IndexError(
            f"index out of range in self: index {int(bad)} is outside [-{n}, {n}) for a gather "
            f"over a dimension of size {n} in a compiled call; check the indices (labels, "
            "token ids) against the size of what they index."
        )


def _bind(ns: dict, exe, i: int, a: np.ndarray):
    """A captured input's new buffer: None if its shape or dtype is not the traced one (a guard
    fails), False if it is not C-contiguous (the general path copies it), else its flat view,
    kept with the buffer for the next calls and bound to the executable's table."""
    if (a.shape, a.dtype) != ns[f"_m{i}"]:
        return None
    if not a.flags.c_contiguous:
        return False
    ns[f"_d{i}"], ns[f"_f{i}"] = a, a.reshape(-1)
    exe.bind(i, ns[f"_f{i}"])
    return ns[f"_f{i}"]
