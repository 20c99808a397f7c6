"""L-BFGS with PyTorch's iteration, stopping rules and optional strong-Wolfe line search.

L-BFGS runs eagerly only: one ``step(closure)`` evaluates the closure a number of times that
depends on the values it returns (line search, convergence tests), which a traced program of
fixed structure cannot express. Under ``jitgrad.compile`` its ``step`` raises ``TraceError``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable

from ..autograd.grad_mode import STATE, enable_grad, no_grad
from ..ir.tracer import TraceError
from ..ops import functions as F
from ..tensor import Tensor
from ._common import check_lr, scalar
from .optimizer import Optimizer


def _cubic_minimum(x1, f1, g1, x2, f2, g2, bounds=None) -> float:
    """The minimiser of the cubic through (x1, f1) and (x2, f2) with slopes g1 and g2, clipped
    to ``bounds`` (default: the interval between the points); their midpoint when the cubic has
    no real minimum."""
    lo, hi = bounds if bounds is not None else (min(x1, x2), max(x1, x2))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    disc = d1 * d1 - g1 * g2
    if disc < 0:
        return (lo + hi) / 2.0
    d2 = math.sqrt(disc)
    if x1 <= x2:
        x = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        x = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(x, lo), hi)


def _strong_wolfe(evaluate, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """A step length along ``d`` satisfying the strong Wolfe conditions (bracketing, then
    zooming by cubic interpolation). ``evaluate(t)`` returns the loss and flat gradient at
    ``x + t d``. Returns the loss, gradient and step length chosen and the evaluations made."""
    d_norm = float(F.amax(F.abs(d)))
    g = F.clone(g)
    f_new, g_new = evaluate(t)
    evals = 1
    gtd_new = float(F.dot(g_new, d))
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done = False
    it = 0
    # bracketing: grow the step until an interval holds a point satisfying the conditions
    while it < max_ls:
        if f_new > f + c1 * t * gtd or (it > 1 and f_new >= f_prev):
            pts = [[t_prev, f_prev, g_prev, gtd_prev], [t, f_new, F.clone(g_new), gtd_new]]
            break
        if abs(gtd_new) <= -c2 * gtd:
            pts = [[t, f_new, g_new, gtd_new]]
            done = True
            break
        if gtd_new >= 0:
            pts = [[t_prev, f_prev, g_prev, gtd_prev], [t, f_new, F.clone(g_new), gtd_new]]
            break
        bounds = (t + 0.01 * (t - t_prev), t * 10)
        t_next = _cubic_minimum(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=bounds)
        t_prev, f_prev, g_prev, gtd_prev = t, f_new, F.clone(g_new), gtd_new
        t = t_next
        f_new, g_new = evaluate(t)
        evals += 1
        gtd_new = float(F.dot(g_new, d))
        it += 1
    if it == max_ls:
        pts = [[0.0, f, g, gtd], [t, f_new, g_new, gtd_new]]
    low, high = (0, 1) if pts[0][1] <= pts[-1][1] else (1, 0)
    # zoom: shrink the bracket [pts[0], pts[1]] around a point satisfying the conditions
    stalled = False
    while not done and it < max_ls:
        if abs(pts[1][0] - pts[0][0]) * d_norm < tolerance_change:
            break
        t = _cubic_minimum(*pts[0][:2], pts[0][3], *pts[1][:2], pts[1][3])
        a, b = min(pts[0][0], pts[1][0]), max(pts[0][0], pts[1][0])
        margin = 0.1 * (b - a)
        if min(b - t, t - a) < margin:
            # too close to an end: move inside unless the last step was already close
            if stalled or t >= b or t <= a:
                t = b - margin if abs(t - b) < abs(t - a) else a + margin
                stalled = False
            else:
                stalled = True
        else:
            stalled = False
        f_new, g_new = evaluate(t)
        evals += 1
        gtd_new = float(F.dot(g_new, d))
        it += 1
        if f_new > f + c1 * t * gtd or f_new >= pts[low][1]:
            pts[high] = [t, f_new, F.clone(g_new), gtd_new]
            low, high = (0, 1) if pts[0][1] <= pts[1][1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (pts[high][0] - pts[low][0]) >= 0:
                pts[high] = list(pts[low])
            pts[low] = [t, f_new, F.clone(g_new), gtd_new]
    t, f_new, g_new, _ = pts[low]
    return f_new, g_new, t, evals


class LBFGS(Optimizer):
    """PyTorch's L-BFGS over all parameters flattened into one vector (one parameter group).

    ``step(closure)`` needs a closure that clears the gradients, computes the loss, calls
    ``backward()`` and returns the loss. ``line_search_fn`` is ``None`` (fixed steps of ``lr``)
    or ``"strong_wolfe"``. Eager only (see the module docstring).
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        line_search_fn: str | None = None,
    ) -> None:
        check_lr(lr)
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        defaults = dict(
            lr=lr,
            max_iter=max_iter,
            max_eval=max_eval,
            tolerance_grad=tolerance_grad,
            tolerance_change=tolerance_change,
            history_size=history_size,
            line_search_fn=line_search_fn,
        )
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        self._params = self.param_groups[0]["params"]

    # -- the parameters as one vector ------------------------------------------------------------
    def _flat_grad(self) -> Tensor:
        parts = []
        for p in self._params:
            g = p.grad
            parts.append(F.zeros_like(p).reshape(-1) if g is None else F.reshape(g, (-1,)))
        return F.cat(parts, 0)

    def _move(self, t, d: Tensor) -> None:
        """``params += t * d`` (d flat)."""
        offset = 0
        for p in self._params:
            n = p.numel()
            p.add_(F.mul(F.reshape(d[offset : offset + n], p.shape), t))
            offset += n

    def _evaluate_at(self, closure, x: list, t, d: Tensor):
        """Loss and flat gradient at ``x + t d``; the parameters are put back to ``x``."""
        self._move(t, d)
        loss = float(closure())
        flat = self._flat_grad()
        for p, saved in zip(self._params, x):
            p.copy_(saved)
        return loss, flat

    def add_param_group(self, param_group: dict) -> None:
        if getattr(self, "_params", None) is not None:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        super().add_param_group(param_group)

    def step(self, closure: Callable | None = None):  # type: ignore[override]
        if STATE.tracer is not None:
            raise TraceError(
                "LBFGS runs eagerly: its step evaluates the closure a number of times that "
                "depends on the loss values (line search, convergence tests), which a compiled "
                "program cannot express. Call optimizer.step(closure) outside jitgrad.compile "
                "(compile the closure's model instead)."
            )
        if closure is None:
            raise TypeError(
                "LBFGS.step() missing 1 required positional argument: 'closure' (a function "
                "that clears the gradients, computes the loss, calls backward() and returns it)"
            )
        with no_grad():
            return self._run(closure)

    def _run(self, closure):
        def evaluate():
            with enable_grad():
                return closure()

        group = self.param_groups[0]
        lr = scalar(group["lr"])
        max_iter, max_eval = group["max_iter"], group["max_eval"]
        tol_grad, tol_change = group["tolerance_grad"], group["tolerance_change"]
        line_search, history = group["line_search_fn"], group["history_size"]
        state = self.state[self._params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        orig_loss = evaluate()
        loss = float(orig_loss)
        evals = 1
        state["func_evals"] += 1
        flat_grad = self._flat_grad()
        if float(F.amax(F.abs(flat_grad))) <= tol_grad:
            return orig_loss

        d, t = state.get("d"), state.get("t")
        old_dirs, old_stps, ro = state.get("old_dirs"), state.get("old_stps"), state.get("ro")
        H_diag = state.get("H_diag")
        prev_flat_grad, prev_loss = state.get("prev_flat_grad"), state.get("prev_loss")
        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:
                d = F.neg(flat_grad)
                old_dirs, old_stps, ro = [], [], []
                H_diag = 1
            else:
                # curvature pair from the last move; kept only where it is positive enough
                y = F.sub(flat_grad, prev_flat_grad)
                s = F.mul(d, t)
                ys = F.dot(y, s)
                if float(ys) > 1e-10:
                    if len(old_dirs) == history:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    H_diag = ys / F.dot(y, y)
                # two-loop recursion: d = -H g
                if "al" not in state:
                    state["al"] = [None] * history
                al = state["al"]
                q = F.neg(flat_grad)
                for i in range(len(old_dirs) - 1, -1, -1):
                    al[i] = F.dot(old_stps[i], q) * ro[i]
                    q.sub_(F.mul(old_dirs[i], al[i]))
                d = r = F.mul(q, H_diag)
                for i in range(len(old_dirs)):
                    be_i = F.dot(old_dirs[i], r) * ro[i]
                    r.add_(F.mul(old_stps[i], al[i] - be_i))
            if prev_flat_grad is None:
                prev_flat_grad = F.clone(flat_grad)
            else:
                prev_flat_grad.copy_(flat_grad)
            prev_loss = loss
            if state["n_iter"] == 1:
                t = min(1.0, 1.0 / float(F.sum(F.abs(flat_grad)))) * lr
            else:
                t = lr
            gtd = float(F.dot(flat_grad, d))
            if gtd > -tol_change:  # not a descent direction
                break

            moved = 0
            if line_search is not None:
                if line_search != "strong_wolfe":
                    raise RuntimeError("only 'strong_wolfe' is supported")
                x_init = [F.clone(p) for p in self._params]
                loss, flat_grad, t, moved = _strong_wolfe(
                    lambda step, x=x_init, d=d: self._evaluate_at(evaluate, x, step, d),
                    t,
                    d,
                    loss,
                    flat_grad,
                    gtd,
                    max_ls=max_eval - evals,
                )
                self._move(t, d)
                converged = float(F.amax(F.abs(flat_grad))) <= tol_grad
            else:
                self._move(t, d)
                converged = False
                if n_iter != max_iter:
                    loss = float(evaluate())
                    flat_grad = self._flat_grad()
                    converged = float(F.amax(F.abs(flat_grad))) <= tol_grad
                    moved = 1
            evals += moved
            state["func_evals"] += moved

            if n_iter == max_iter or evals >= max_eval or converged:
                break
            if float(F.amax(F.abs(F.mul(d, t)))) <= tol_change:
                break
            if abs(loss - prev_loss) < tol_change:
                break

        state.update(
            d=d,
            t=t,
            old_dirs=old_dirs,
            old_stps=old_stps,
            ro=ro,
            H_diag=H_diag,
            prev_flat_grad=prev_flat_grad,
            prev_loss=prev_loss,
        )
        return orig_loss

    # -- state_dict: the state holds flat vectors and lists of them ------------------------------
    def _convert_param_state(self, index, p: Tensor, saved: dict) -> dict:
        def convert(value):
            if isinstance(value, Tensor):
                return F.cast(value, p.dtype) if value.is_floating_point() else value
            if isinstance(value, (list, tuple)):
                return type(value)(convert(v) for v in value)
            return copy.deepcopy(value)

        return {key: convert(value) for key, value in saved.items()}

    @staticmethod
    def _write_param_state(loaded: dict, current: dict) -> dict:
        def fresh(value):
            if isinstance(value, Tensor):
                return F.clone(value.detach())
            if isinstance(value, (list, tuple)):
                return type(value)(fresh(v) for v in value)
            return value

        return {key: fresh(value) for key, value in loaded.items()}
