"""Module's ``state_dict`` and ``load_state_dict`` (a mixin of ``Module``)."""

from __future__ import annotations

from collections import OrderedDict, namedtuple

from ..autograd.grad_mode import no_grad
from ..tensor import Tensor


class _IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    __slots__ = ()

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


_EXTRA_STATE = "_extra_state"


def _has_extra_state(module) -> bool:
    return type(module).get_extra_state is not StateDictMethods.get_extra_state


class StateDictMethods:
    def state_dict(self, *, destination=None, prefix: str = "", keep_vars: bool = False):
        """Parameters and persistent buffers by dotted name (detached unless ``keep_vars``)."""
        if destination is None:
            destination = OrderedDict()
        for hook in self.__dict__.get("_state_dict_pre_hooks", {}).values():
            hook(self, prefix, keep_vars)
        for name, t in self._local_state().items():
            destination[prefix + name] = t if keep_vars else t.detach()
        if _has_extra_state(self):
            destination[prefix + _EXTRA_STATE] = self.get_extra_state()
        for name, m in self._modules.items():
            if m is not None:
                m.state_dict(
                    destination=destination, prefix=f"{prefix}{name}.", keep_vars=keep_vars
                )
        for hook in self.__dict__.get("_state_dict_hooks", {}).values():
            result = hook(self, destination, prefix, {})
            if result is not None:
                raise RuntimeError("state_dict post-hook must return None")
        return destination

    def get_extra_state(self):
        """Override (with ``set_extra_state``) to keep non-tensor state in the state_dict."""
        raise RuntimeError(
            "Reached a code path in Module.get_extra_state() that should never be called; "
            "override get_extra_state() and set_extra_state() together."
        )

    def set_extra_state(self, state) -> None:
        raise RuntimeError(
            "Reached a code path in Module.set_extra_state() that should never be called; "
            "override get_extra_state() and set_extra_state() together."
        )

    def _local_state(self) -> dict:
        out = {n: p for n, p in self._parameters.items() if p is not None}
        for n, b in self._buffers.items():
            if b is not None and n not in self._non_persistent_buffers_set:
                out[n] = b
        return out

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Copy values into this module's tensors; returns (missing_keys, unexpected_keys).

        Every key and shape is checked before anything is written, so a failed load leaves the
        module unchanged.
        """
        if not isinstance(state_dict, dict):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict)}.")
        state_dict = OrderedDict(state_dict)  # (pre-hooks may rename keys in the copy)
        missing, errors, writes, expected, extra = [], [], [], set(), []
        # every path to a shared submodule is a set of keys, as state_dict() writes them
        for prefix, mod in self.named_modules(remove_duplicate=False):
            pre = prefix + "." if prefix else ""
            for hook in mod.__dict__.get("_load_state_dict_pre_hooks", {}).values():
                hook(mod, state_dict, pre, {}, strict, missing, [], errors)
            if _has_extra_state(mod):
                expected.add(pre + _EXTRA_STATE)
                if pre + _EXTRA_STATE in state_dict:
                    extra.append((mod, state_dict[pre + _EXTRA_STATE]))
                else:
                    missing.append(pre + _EXTRA_STATE)
            for name, target in mod._local_state().items():
                key = pre + name
                expected.add(key)
                if key not in state_dict:
                    missing.append(key)
                    continue
                value = state_dict[key]
                if not isinstance(value, Tensor):
                    errors.append(
                        f'While copying the parameter named "{key}", expected torch.Tensor or '
                        f"Tensor-like object from checkpoint but received {type(value)}"
                    )
                elif getattr(type(target), "_is_uninitialized", False):
                    writes.append((mod, name, target, value))  # (a lazy module's placeholder)
                elif value.shape != target.shape:
                    errors.append(
                        f"size mismatch for {key}: copying a param with shape {value.shape} from "
                        f"checkpoint, the shape in current model is {target.shape}."
                    )
                else:
                    writes.append((mod, name, target, value))
        unexpected = [k for k in state_dict if k not in expected]
        hints = []
        if errors:
            hints.append("Build the model with the checkpoint's shapes, or drop those entries.")
        if strict and (missing or unexpected):
            hints.append("To load only the keys that match, pass strict=False.")
        if strict:
            if unexpected:
                keys = ", ".join(f'"{k}"' for k in unexpected)
                errors.insert(0, f"Unexpected key(s) in state_dict: {keys}. ")
            if missing:
                keys = ", ".join(f'"{k}"' for k in missing)
                errors.insert(0, f"Missing key(s) in state_dict: {keys}. ")
        if errors:
            raise RuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                + "\n\t".join(errors + hints)
            )
        with no_grad():
            for mod, name, target, value in writes:
                if assign:
                    if name in mod._parameters:
                        mod._parameters[name] = _parameter(value, target.requires_grad)
                    else:
                        mod._buffers[name] = value
                else:
                    if getattr(type(target), "_is_uninitialized", False):
                        target.materialize(value.shape)
                    target.copy_(value)  # in place: optimizers and compiled steps keep their refs
        for mod, value in extra:
            mod.set_extra_state(value)
        result = _IncompatibleKeys(missing, unexpected)
        for _, mod in self.named_modules():
            for hook in mod.__dict__.get("_load_state_dict_post_hooks", {}).values():
                hook(mod, result)
        return result


def _parameter(value, requires_grad: bool):
    from .module import Parameter

    return Parameter(value, requires_grad)
