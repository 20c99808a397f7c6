"""``Optimizer``: parameter groups, per-parameter state, zero_grad, state_dict, step(closure).

Contract every optimizer keeps (what lets a whole training step be traced and compiled):

* ``step()`` runs under ``no_grad`` and changes parameters and state only through jitgrad ops and
  in-place tensor methods (``p.sub_``, ``buf.mul_``, ``copy_``); state tensors are created once and
  then updated in place, so they keep their identity from step to step.
* No Python branch depends on a tensor's value (no ``.item()``); step counters are 0-d tensors.
* Hyperparameters are read through two methods only: ``_hyper(group, name)`` for values that
  enter arithmetic (a later compiler can hand back runtime inputs there, so a changing learning
  rate does not force a recompile) and ``_option(group, name)`` for values that choose which
  terms exist (``momentum != 0``, ``nesterov``, ...), i.e. the structure of the update.
"""

from __future__ import annotations

import copy
import functools
import warnings
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from ..autograd.grad_mode import STATE, enable_grad, no_grad
from ..autograd.graph import RemovableHandle
from ..ops import functions as F
from ..tensor import Tensor


class _RequiredParameter:
    """Marks a hyperparameter every group must give (PyTorch's ``optim.optimizer.required``)."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()

# the tests ``Optimizer._option_test`` may apply (named, so a compiled step's guard can be
# written out as source: see compile_host)
OPTION_TESTS = {"nonzero": lambda v: v != 0, "positive": lambda v: v > 0}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# hooks every optimizer's step runs (register_optimizer_step_pre_hook / _post_hook)
_global_pre_hooks: OrderedDict = OrderedDict()
_global_post_hooks: OrderedDict = OrderedDict()


def register_optimizer_step_pre_hook(hook: Callable) -> RemovableHandle:
    """A hook run before every optimizer's ``step``: ``hook(optimizer, args, kwargs)``
    returning ``None`` or new ``(args, kwargs)``."""
    handle = RemovableHandle(_global_pre_hooks)
    _global_pre_hooks[handle._key] = hook
    return handle


def register_optimizer_step_post_hook(hook: Callable) -> RemovableHandle:
    """A hook run after every optimizer's ``step``: ``hook(optimizer, args, kwargs)``."""
    handle = RemovableHandle(_global_post_hooks)
    _global_post_hooks[handle._key] = hook
    return handle


def _add_hook(hooks: OrderedDict, hook: Callable, prepend: bool = False) -> RemovableHandle:
    handle = RemovableHandle(hooks)
    hooks[handle._key] = hook
    if prepend:
        hooks.move_to_end(handle._key, last=False)
    return handle


def _with_step_hooks(step: Callable) -> Callable:
    """``step`` running the step hooks around it, once per call (a subclass's ``step`` that
    calls ``super().step()`` runs them once). Under ``jitgrad.compile`` they run while the step
    is traced, as any Python code in a traced function does."""

    @functools.wraps(step)
    def wrapper(*args, **kwargs):
        self = args[0]
        if self.__dict__.get("_running_step_hooks"):
            return step(*args, **kwargs)
        pre = list(_global_pre_hooks.values()) + list(self._hooks("_optimizer_step_pre_hooks"))
        for hook in pre:
            result = hook(self, args, kwargs)
            if result is not None:
                if not (isinstance(result, tuple) and len(result) == 2):
                    raise RuntimeError(
                        f"{step} must return None or a tuple of (new_args, new_kwargs), but got "
                        f"{result}."
                    )
                args, kwargs = result
        self._running_step_hooks = True
        try:
            out = step(*args, **kwargs)
        finally:
            self._running_step_hooks = False
        post = list(self._hooks("_optimizer_step_post_hooks")) + list(_global_post_hooks.values())
        for hook in post:
            hook(self, args, kwargs)
        return out

    wrapper._with_step_hooks = True
    return wrapper


class Optimizer:
    """Base class: holds ``param_groups`` (list of dicts) and ``state`` (dict keyed by param)."""

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("step")
        if step is not None and not getattr(step, "_with_step_hooks", False):
            cls.step = _with_step_hooks(step)

    def __init__(self, params: Iterable, defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        self.state: defaultdict[Tensor, dict] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        if isinstance(params, Tensor):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Tensors or "
                f"dicts, but got {type(params).__name__}; pass model.parameters() or [tensor]."
            )
        groups = list(params)
        if len(groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # -- hyperparameter access (the one place a compiler hooks) ----------------------------------
    def _hyper(self, group: dict, name: str):
        """A hyperparameter value used in arithmetic: a Python number in eager mode, a runtime
        input of the tape under ``jitgrad.compile`` (changing it needs no retrace)."""
        value = group[name]
        tracer = STATE.tracer
        if tracer is None:
            return value
        if isinstance(value, tuple) and all(_is_number(v) for v in value):
            # e.g. Adam's betas: each a runtime input (a scheduler cycling beta1 changes one)
            return tuple(
                tracer.hyper(
                    v, lambda i=i: group[name][i], f"{name}[{i}]", key=(id(group), name, i)
                )
                for i, v in enumerate(value)
            )
        if not _is_number(value):
            return value
        return tracer.hyper(value, lambda: group[name], name, key=(id(group), name))

    def _option(self, group: dict, name: str):
        """A hyperparameter that decides which terms the update has (part of its structure);
        a compiled step checks it on every call and retraces when it changes."""
        value = group[name]
        if STATE.tracer is not None:
            STATE.tracer.guards.append(("option", group, (name, value)))
        return value

    def _option_test(self, group: dict, name: str, test: str) -> bool:
        """Whether a hyperparameter passes ``test`` (``"nonzero"``: ``!= 0``, ``"positive"``:
        ``> 0``), where only that decides which terms the update has and the value itself is
        read through ``_hyper``: a compiled step retraces when the answer changes, not when
        the value does (a scheduler cycling the momentum needs no retrace)."""
        result = OPTION_TESTS[test](group[name])
        if STATE.tracer is not None:
            STATE.tracer.guards.append(("option_test", group, (name, test, result)))
        return result

    # -- hooks -----------------------------------------------------------------------------------
    def _hooks(self, name: str):
        hooks = self.__dict__.get(name)
        return () if hooks is None else hooks.values()

    def _hook_dict(self, name: str) -> OrderedDict:
        if name not in self.__dict__:
            self.__dict__[name] = OrderedDict()
        return self.__dict__[name]

    def register_step_pre_hook(self, hook: Callable) -> RemovableHandle:
        """``hook(optimizer, args, kwargs)`` before each ``step``; it may return new
        ``(args, kwargs)``."""
        return _add_hook(self._hook_dict("_optimizer_step_pre_hooks"), hook)

    def register_step_post_hook(self, hook: Callable) -> RemovableHandle:
        """``hook(optimizer, args, kwargs)`` after each ``step``."""
        return _add_hook(self._hook_dict("_optimizer_step_post_hooks"), hook)

    def register_state_dict_pre_hook(self, hook: Callable, prepend: bool = False):
        """``hook(optimizer)`` before ``state_dict()`` builds its result."""
        return _add_hook(self._hook_dict("_optimizer_state_dict_pre_hooks"), hook, prepend)

    def register_state_dict_post_hook(self, hook: Callable, prepend: bool = False):
        """``hook(optimizer, state_dict)`` on ``state_dict()``'s result; it may return a new
        one."""
        return _add_hook(self._hook_dict("_optimizer_state_dict_post_hooks"), hook, prepend)

    def register_load_state_dict_pre_hook(self, hook: Callable, prepend: bool = False):
        """``hook(optimizer, state_dict)`` before ``load_state_dict``; it may return the
        state_dict to load instead."""
        return _add_hook(self._hook_dict("_optimizer_load_state_dict_pre_hooks"), hook, prepend)

    def register_load_state_dict_post_hook(self, hook: Callable, prepend: bool = False):
        """``hook(optimizer)`` after ``load_state_dict`` has loaded."""
        return _add_hook(self._hook_dict("_optimizer_load_state_dict_post_hooks"), hook, prepend)

    # -- groups ----------------------------------------------------------------------------------
    def add_param_group(self, param_group: dict) -> None:
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            param_group["params"] = [params]
        elif isinstance(params, set):
            raise TypeError(
                "optimizer parameters need to be organized in ordered collections, but the "
                "ordering of tensors in sets will change between runs. Please use a list instead."
            )
        else:
            param_group["params"] = list(params)
        # named parameters (model.named_parameters()): the names go to "param_names"
        named = [p for p in param_group["params"] if isinstance(p, tuple)]
        if named:
            if len(named) != len(param_group["params"]):
                raise ValueError(
                    "all optimizer params should be with/without names. Some param names are "
                    "missing"
                )
            param_group["params"] = [p[1] for p in named]
            param_group["param_names"] = [p[0] for p in named]
        for p in param_group["params"]:
            if not isinstance(p, Tensor):
                raise TypeError(
                    f"optimizer can only optimize Tensors, but one of the params is "
                    f"{type(p).__name__}"
                )
            if not (p.is_leaf or p.retains_grad):
                raise ValueError(
                    "can't optimize a non-leaf Tensor; optimize the leaf it was computed from, "
                    "or detach().requires_grad_() it."
                )
        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError(
                    "parameter group didn't specify a value of required optimization parameter "
                    f"{name}"
                )
            param_group.setdefault(name, default)
        ids = [id(p) for p in param_group["params"]]
        if len(ids) != len(set(ids)):
            warnings.warn(
                "optimizer contains a parameter group with duplicate parameters; in future, this "
                "will cause an error; see github.com/pytorch/pytorch/issues/40967 for more "
                "information",
                stacklevel=3,
            )
        for group in self.param_groups:
            if ("param_names" in param_group) != ("param_names" in group):
                raise ValueError(
                    "all optimizer param groups should be with/without names. cannot add param "
                    f"group {'with' if 'param_names' in param_group else 'without'} names to "
                    "the optimizer"
                )
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if not seen.isdisjoint(ids):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)

    # -- gradients and steps ---------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                # set_to_none assigns without reading .grad, so a compiled step does not depend
                # on whether a gradient existed before it
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.detach_().zero_()  # detach_ also clears requires_grad

    def step(self, closure: Callable[[], Any] | None = None):
        """One update of every parameter that has a gradient; returns ``closure()``'s value."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    grad = p.grad
                    if grad is None:
                        continue
                    state = self.state[p]
                    if not state:
                        self._init_state(p, state, group)
                    self._update(p, grad, state, group)
        return loss

    step = _with_step_hooks(step)

    def _init_state(self, p: Tensor, state: dict, group: dict) -> None:
        """Create a parameter's state tensors (once; later steps update them in place)."""

    def _update(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> None:
        raise NotImplementedError

    # -- state_dict ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{"state": {index: {...}}, "param_groups": [{..., "params": [index, ...]}]}``.

        Parameters are numbered in group order; the state tensors are the live ones (not copies),
        as in PyTorch.
        """
        for hook in list(self._hooks("_optimizer_state_dict_pre_hooks")):
            hook(self)
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            for p in group["params"]:
                index.setdefault(id(p), len(index))
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {index[id(p)]: s for p, s in self.state.items() if id(p) in index}
        out = {"state": state, "param_groups": groups}
        for hook in list(self._hooks("_optimizer_state_dict_post_hooks")):
            result = hook(self, out)
            if result is not None:
                out = result
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load hyperparameters and state. Existing state tensors are written in place.

        Everything is checked (group sizes, state tensor shapes) before anything is written, so
        a failed load leaves the optimizer unchanged.
        """
        state_dict = dict(state_dict)  # (hooks may change it; the caller's stays as it was)
        for hook in list(self._hooks("_optimizer_load_state_dict_pre_hooks")):
            result = hook(self, state_dict)
            if result is not None:
                state_dict = result
        self._load_state_dict(state_dict)
        for hook in list(self._hooks("_optimizer_load_state_dict_post_hooks")):
            hook(self)

    def _load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                "loaded state dict has a different number of parameter groups; build the "
                "optimizer with the same parameter groups as the one that was saved."
            )
        for group, saved in zip(self.param_groups, saved_groups):
            if len(group["params"]) != len(saved["params"]):
                raise ValueError(
                    "loaded state dict contains a parameter group that doesn't match the size of "
                    "optimizer's group; build the optimizer over the same parameters, in the "
                    "same order, as the one that was saved."
                )
        by_index = {}
        for group, saved in zip(self.param_groups, saved_groups):
            by_index.update(zip(saved["params"], group["params"]))
        with no_grad():
            loaded = {}  # index -> its state with values converted, nothing written yet
            for key, value in state_dict["state"].items():
                if key in by_index:
                    loaded[key] = self._convert_param_state(key, by_index[key], value)
            new_state: defaultdict[Tensor, dict] = defaultdict(dict)
            for key, value in state_dict["state"].items():
                if key in by_index:
                    p = by_index[key]
                    new_state[p] = self._write_param_state(loaded[key], self.state.get(p, {}))
                else:
                    new_state[key] = copy.deepcopy(value)
        for group, saved in zip(self.param_groups, saved_groups):
            params, names = group["params"], group.get("param_names")
            group.clear()  # in place: the same dicts stay in param_groups
            group.update({k: copy.deepcopy(v) for k, v in saved.items() if k != "params"})
            group["params"] = params
            if names is not None and "param_names" not in group:
                group["param_names"] = names  # (a checkpoint saved without names keeps ours)
        self.state = new_state

    def _state_shape(self, p: Tensor, key: str) -> tuple:
        """The shape of a parameter's state tensor ``key`` that is not 0-d (checked on load)."""
        return tuple(p.shape)  # (moments, momentum: the parameter's shape)

    def _convert_param_state(self, index, p: Tensor, saved: dict) -> dict:
        """A parameter's saved state with tensors in the dtype they are kept in (no writes)."""
        out = {}
        for key, value in saved.items():
            if isinstance(value, Tensor):
                want = self._state_shape(p, key)
                if value.ndim > 0 and tuple(value.shape) != want:
                    raise ValueError(
                        f"loaded state dict has state '{key}' of shape {value.shape} for "
                        f"parameter {index} of shape {p.shape}, where it should be "
                        f"{want}; the checkpoint belongs to a different model."
                    )
                # per-parameter floating buffers follow the parameter's dtype; 0-d state (the
                # step counter, NAdam's mu_product, ASGD's eta and mu) keeps its own, so a
                # reloaded optimizer continues exactly as the saved one would have
                if value.ndim > 0 and value.is_floating_point():
                    value = F.cast(value, p.dtype)
            out[key] = value
        return out

    @staticmethod
    def _write_param_state(loaded: dict, current: dict) -> dict:
        out = {}
        for key, value in loaded.items():
            if isinstance(value, Tensor):
                cur = current.get(key)
                if (
                    isinstance(cur, Tensor)
                    and cur.shape == value.shape
                    and cur.dtype == value.dtype
                ):
                    value = cur.copy_(value)  # keeps identity: a compiled step holds it
                else:
                    value = F.clone(value.detach())
            else:
                value = copy.deepcopy(value)
            out[key] = value
        return out

    def __getstate__(self) -> dict:
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        out = type(self).__name__ + " ("
        for i, group in enumerate(self.param_groups):
            out += f"\nParameter Group {i}\n"
            for key in sorted(group):
                if key != "params":
                    out += f"    {key}: {group[key]}\n"
        return out + ")"
