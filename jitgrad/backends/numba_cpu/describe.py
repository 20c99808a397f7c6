"""What a Numba executable tells about itself: its generated source (the program, each call's
kernel and buffers, then every module), which call computed a value, the stored values of the
last call (agreement checks) and a timed run of its program (``profile``). A mixin of
``Executable``.
"""

from __future__ import annotations

import time

import numpy as np

from . import cache


class DescribingMixin:
    """``Executable``'s introspection (see the module docstring)."""

    def profile(self, inputs: list) -> tuple:
        """One call, timing each call of the program: ([(seconds, what it runs)] in program
        order, outputs, writes) — the outputs and writes of a plain call."""
        import ctypes

        from .abi import cycles_address, run_program_timed_address

        now = ctypes.CFUNCTYPE(ctypes.c_int64)(cycles_address())
        cycles = np.zeros(len(self.calls), np.int64)
        with self.lock:
            program = self.program.copy()
            self.program[0] = run_program_timed_address()
            self.program[-1] = cycles.ctypes.data
            try:
                c0, t0 = now(), time.perf_counter()
                outs, writes = self._call(inputs)
                c1, t1 = now(), time.perf_counter()
            finally:
                self.program[:] = program
        per_cycle = (t1 - t0) / max(1, c1 - c0)
        rows = [(cycles[j] * per_cycle, self._what(c)) for j, c in enumerate(self.calls)]
        return rows, outs, writes

    def values(self, inputs=None) -> dict:
        """The stored values of the last call (for agreement checks)."""
        flats, fresh = self._last_call
        out = {}
        for i, v in enumerate(self.fresh):
            out[v] = fresh[i].reshape(v.shape)
        for i, v in enumerate(self.workspace):
            out[v] = self.work_arrays[i].reshape(v.shape)
        pos = {v: i for i, v in enumerate(self.tape.inputs)}
        for v, target in self.in_place.items():
            out[v] = flats[pos[target]].reshape(v.shape)
        return out

    def kernel_of(self, var) -> str | None:
        for j, c in enumerate(self.calls):
            k = c.kernel
            if var in k.roots or any(e.out is var for e in k.covers):
                return f"call {j} of {self.name}: {self._what(c)}"
        return None

    @staticmethod
    def _what(c) -> str:
        """Which kernel a call runs: its module, or the runtime's function."""
        k = c.kernel
        if k.product is not None:
            return f"{k.kind} -> {k.root}, runtime {k.product[0]}_{k.product[1]} (products.py)"
        if c.source is None:
            return "runtime BLAS thread count"
        return f"{k.kind} -> {k.root}, kernel {cache.module_name(c.source, 'jgk')}"

    def source(self) -> str:
        """The program (which kernel each call runs, on which buffers and sizes), then each
        distinct kernel's module and the driver's."""
        names = {}
        for (kind, key), at in self.slot_of.items():
            names[at] = self.tape.inputs[key] if kind == "input" else key
            if kind == "block":
                names[at] = f"block{key}"
        kernels = len(self.sources()) - 1
        lines = [f"# {self.tape.name}: {len(self.calls)} calls of {kernels} kernels, driver "
                 f"{self.name}"]  # fmt: skip
        for j, c in enumerate(self.calls):
            k = c.kernel
            line = f"# call {j}: {self._what(c)}" + (" on threads" if c.threaded else "")
            if k.product is not None:
                for bufs, sizes in k.product[2]:
                    out, a, b = bufs[:3]
                    batch, m, n, kk, ta, tb = sizes
                    line += (f"; {out} = {a}{'^T' if ta else ''} @ {b}{'^T' if tb else ''} "
                             f"({batch}x{m}x{n}x{kk})")  # fmt: skip
            elif k.buffers or c.words:
                nb = len(k.buffers)
                bufs = [f"b{i}={names[w]}" for i, w in enumerate(c.words[:nb])]
                if k.in_place is not None:
                    bufs[0] += " (in place)"
                line += ": " + ", ".join(bufs) if bufs else ""
                line += f"; sizes {c.words[nb:]}" if c.words[nb:] else ""
                line += f"; consts {c.consts}" if c.consts else ""
            lines.append(line)
        out = ["\n".join(lines)]
        for src in self.sources():
            prefix = "jgk" if "def kernel" in src else "jgd"
            out.append(f"# ---- {cache.module_name(src, prefix)}.py\n{src}")
        return "\n\n".join(out)
