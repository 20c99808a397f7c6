"""``nn.utils.parametrize``: a tensor of a module computed from other tensors on every access.

``register_parametrization(module, "weight", P())`` moves the parameter into
``module.parametrizations.weight.original`` (or ``original0``, ``original1``, ... when
``P.right_inverse`` returns several tensors) and swaps the module's class for a subclass,
``Parametrized<Name>``, whose ``weight`` property evaluates the chain of parametrizations. The
original Parameter object is kept (its value set in place), so optimizers holding it still
train it; under ``jitgrad.compile`` each access is ordinary traced arithmetic.
"""

from __future__ import annotations

import contextlib

from ...autograd.grad_mode import no_grad
from ...tensor import Tensor
from ..layers import ModuleDict, ModuleList
from ..module import Module, Parameter

__all__ = [
    "register_parametrization",
    "remove_parametrizations",
    "is_parametrized",
    "type_before_parametrizations",
    "cached",
    "ParametrizationList",
]

_cache_depth = 0
_cache: dict = {}


@contextlib.contextmanager
def cached():
    """Within the block, each parametrized tensor is computed once and then reused."""
    global _cache_depth
    _cache_depth += 1
    try:
        yield
    finally:
        _cache_depth -= 1
        if not _cache_depth:
            _cache.clear()


def _set_value(original: Tensor, value: Tensor) -> None:
    """``original`` takes ``value`` in place (the object, as the optimizer sees it, stays)."""
    with no_grad():
        if tuple(original.shape) == tuple(value.shape) and original.dtype is value.dtype:
            original.copy_(value)
        else:
            original.data = value.detach()


class ParametrizationList(ModuleList):
    """The parametrizations of one tensor, applied in order, and the original tensor(s)."""

    def __init__(self, modules, original: Tensor, unsafe: bool = False) -> None:
        if len(modules) == 0:
            raise ValueError("ParametrizationList requires one or more modules.")
        super().__init__(modules)
        self.unsafe = unsafe
        with no_grad():
            new = original
            for module in reversed(list(self)):
                if hasattr(module, "right_inverse"):
                    new = module.right_inverse(new)
        if isinstance(new, Tensor):
            self.is_tensor, self.ntensors = True, 1
            _set_value(original, new)
            if isinstance(original, Parameter):
                self.register_parameter("original", original)
            else:
                self.register_buffer("original", original)
        else:
            if not isinstance(new, (tuple, list)) or not all(isinstance(t, Tensor) for t in new):
                raise ValueError(
                    "'right_inverse' must return a Tensor or a Sequence of tensors "
                    f"(list, tuple...). Got {type(new).__name__}"
                )
            self.is_tensor, self.ntensors = False, len(new)
            for i, t in enumerate(new):
                if isinstance(original, Parameter):
                    self.register_parameter(
                        f"original{i}", Parameter(t.detach(), original.requires_grad)
                    )
                else:
                    self.register_buffer(f"original{i}", t.detach())
        if not unsafe:
            with no_grad():
                out = self()
            if not isinstance(out, Tensor):
                raise ValueError(
                    f"A parametrization must return a tensor. Got {type(out).__name__}."
                )
            if tuple(out.shape) != tuple(original.shape) or out.dtype is not original.dtype:
                raise ValueError(
                    "Registering a parametrization may not change the shape or dtype of the "
                    f"tensor, unless `unsafe` flag is enabled.\nunparametrized dtype: "
                    f"{original.dtype}\nparametrized dtype: {out.dtype}\nunparametrized shape: "
                    f"{tuple(original.shape)}\nparametrized shape: {tuple(out.shape)}"
                )

    def right_inverse(self, value: Tensor) -> None:
        """Set the original(s) so that the chain gives ``value``."""
        with no_grad():
            for module in reversed(list(self)):
                if not hasattr(module, "right_inverse"):
                    raise RuntimeError(
                        f"parametrization {type(module).__name__} does not implement right_inverse."
                    )
                value = module.right_inverse(value)
            if self.is_tensor:
                _set_value(self.original, value)
            else:
                for i, t in enumerate(value):
                    _set_value(getattr(self, f"original{i}"), t)

    def forward(self) -> Tensor:
        modules = list(self)
        if self.is_tensor:
            x = modules[0](self.original)
        else:
            x = modules[0](*(getattr(self, f"original{i}") for i in range(self.ntensors)))
        for module in modules[1:]:
            x = module(x)
        return x


def _property(name: str) -> property:
    def get(self):
        if _cache_depth:
            key = (id(self), name)
            if key not in _cache:
                _cache[key] = self.parametrizations[name]()
            return _cache[key]
        return self.parametrizations[name]()

    def set_(self, value):
        self.parametrizations[name].right_inverse(value)

    return property(get, set_)


def _parametrized_class(module: Module) -> None:
    cls = type(module)
    new = type(f"Parametrized{cls.__name__}", (cls,), {"_original_class": cls})
    new.__module__ = cls.__module__
    module.__class__ = new


def is_parametrized(module: Module, tensor_name: str | None = None) -> bool:
    parametrizations = module.__dict__.get("_modules", {}).get("parametrizations")
    if not isinstance(parametrizations, ModuleDict):
        return False
    return len(parametrizations) > 0 if tensor_name is None else tensor_name in parametrizations


def type_before_parametrizations(module: Module) -> type:
    return type(module)._original_class if is_parametrized(module) else type(module)


def register_parametrization(module: Module, tensor_name: str, parametrization: Module, *,
                             unsafe: bool = False) -> Module:  # fmt: skip
    """Make ``module.<tensor_name>`` the result of ``parametrization`` applied to the tensor's
    original value (stacked on earlier parametrizations of it)."""
    parametrization.train(module.training)
    if is_parametrized(module, tensor_name):
        plist = module.parametrizations[tensor_name]
        if not unsafe:
            with no_grad():
                current = getattr(module, tensor_name)
                out = parametrization(current)
            if tuple(out.shape) != tuple(current.shape) or out.dtype is not current.dtype:
                raise ValueError(
                    "Registering a parametrization may not change the shape or dtype of the "
                    "tensor, unless `unsafe` flag is enabled."
                )
        plist.append(parametrization)
        plist.unsafe |= unsafe
        return module
    if tensor_name in module._buffers or tensor_name in module._parameters:
        original = getattr(module, tensor_name)
        plist = ParametrizationList([parametrization], original, unsafe=unsafe)
        delattr(module, tensor_name)
        if not is_parametrized(module):
            _parametrized_class(module)
            module.parametrizations = ModuleDict()
        module.parametrizations[tensor_name] = plist
        setattr(type(module), tensor_name, _property(tensor_name))
        return module
    raise ValueError(
        f"Module '{module}' does not have a parameter, a buffer, or a parametrized element "
        f"with name '{tensor_name}'"
    )


def remove_parametrizations(module: Module, tensor_name: str,
                            leave_parametrized: bool = True) -> Module:  # fmt: skip
    """Undo the parametrizations of ``tensor_name``: it becomes a parameter (or buffer) again,
    holding its parametrized value (``leave_parametrized``) or its original one."""
    if not is_parametrized(module, tensor_name):
        raise ValueError(f"Module {module} does not have a parametrization on {tensor_name}")
    plist = module.parametrizations[tensor_name]
    if plist.is_tensor:
        original = plist.original
        if leave_parametrized:
            with no_grad():
                value = getattr(module, tensor_name)
            _set_value(original, value)
    else:
        if not leave_parametrized:
            raise ValueError(
                "Cannot leave unparametrized (`leave_parametrized=False`) a tensor that is "
                "parametrized in terms of a sequence of tensors."
            )
        with no_grad():
            value = getattr(module, tensor_name)
        requires_grad = plist.original0.requires_grad
        original = (
            Parameter(value.detach(), requires_grad)
            if isinstance(plist.original0, Parameter)
            else value.detach()
        )
    delattr(type(module), tensor_name)
    del module.parametrizations[tensor_name]
    if isinstance(original, Parameter):
        module.register_parameter(tensor_name, original)
    else:
        module.register_buffer(tensor_name, original)
    if not is_parametrized(module):
        delattr(module, "parametrizations")
        module.__class__ = type(module)._original_class
    return module
