"""Module's conversion and editing conveniences: ``half``/``bfloat16``/``type``/``cuda``,
``to_empty``, ``share_memory`` and ``set_submodule`` (a mixin, to keep ``module.py`` short)."""

from __future__ import annotations

from .. import dtypes


class ModuleConveniences:
    def half(self):
        return self.to(dtypes.float16)

    def bfloat16(self):
        return self.to(dtypes.bfloat16)

    def type(self, dst_type):
        """Cast every parameter and buffer to ``dst_type`` (a dtype)."""
        from ..ops import functions as _F

        dst_type = dtypes.as_dtype(dst_type)
        return self._apply(lambda t: _F.cast(t, dst_type))

    def cuda(self, device=None):
        return self.to("cuda" if device is None else f"cuda:{int(device)}")

    def share_memory(self):
        """A no-op here: tensors live in this process (PyTorch moves them to shared memory)."""
        return self

    def to_empty(self, *, device, recurse: bool = True):
        """Parameters and buffers replaced by uninitialised tensors of the same shapes."""
        from ..factories import empty

        def fresh(t):
            return empty(tuple(t.shape), dtype=t.dtype, device=device)

        if recurse:
            return self._apply(fresh)
        saved = self._modules
        object.__setattr__(self, "_modules", {})
        try:
            return self._apply(fresh)
        finally:
            object.__setattr__(self, "_modules", saved)

    def set_submodule(self, target: str, module, strict: bool = False) -> None:
        """Put ``module`` at the dotted path ``target`` (the parent must exist; with
        ``strict``, the replaced submodule too)."""
        from .module import Module

        if target == "":
            raise ValueError("Cannot set the submodule without a target name!")
        *path, name = target.split(".")
        parent = self
        for item in path:
            if not hasattr(parent, item):
                raise AttributeError(f"{parent._get_name()} has no attribute `{item}`")
            parent = getattr(parent, item)
            if not isinstance(parent, Module):
                raise AttributeError(f"`{item}` is not an nn.Module")
        if strict and not hasattr(parent, name):
            raise AttributeError(f"{parent._get_name()} has no attribute `{name}`")
        if hasattr(parent, name) and not isinstance(getattr(parent, name), (Module, type(None))):
            raise AttributeError(f"`{name}` is not an nn.Module")
        setattr(parent, name, module)
