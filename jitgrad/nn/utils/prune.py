"""``nn.utils.prune``: pruning by masks, as PyTorch's. Pruning ``weight`` keeps the full tensor
as the parameter ``weight_orig`` and a 0/1 buffer ``weight_mask``; a forward pre-hook sets
``weight = weight_orig * weight_mask`` before every call (traced arithmetic under
``jitgrad.compile``). Pruning again only considers the entries (or channels) still unpruned.
``remove`` makes the pruned tensor the parameter again.

Masks are computed once, eagerly (their choice reads values), with jitgrad ops.
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod

from ...autograd.grad_mode import no_grad
from ...factories import ones_like, zeros_like
from ...ops import functions as _F
from ...random import rand
from ...tensor import Tensor
from ..module import Module

__all__ = [
    "BasePruningMethod", "PruningContainer", "Identity", "RandomUnstructured", "L1Unstructured",
    "RandomStructured", "LnStructured", "CustomFromMask", "identity", "random_unstructured",
    "l1_unstructured", "random_structured", "ln_structured", "global_unstructured",
    "custom_from_mask", "remove", "is_pruned",
]  # fmt: skip


def _validate_amount_init(amount) -> None:
    if not isinstance(amount, numbers.Real):
        raise TypeError(f"Invalid type for amount: {amount}. Must be int or float.")
    if (isinstance(amount, numbers.Integral) and amount < 0) or (
        not isinstance(amount, numbers.Integral) and (float(amount) > 1.0 or float(amount) < 0.0)
    ):
        raise ValueError(
            f"amount={amount} should either be a float in the range [0, 1] or a non-negative "
            "integer"
        )


def _validate_amount(amount, size: int) -> None:
    if isinstance(amount, numbers.Integral) and amount > size:
        raise ValueError(
            f"amount={amount} should be smaller than the number of parameters to prune={size}"
        )


def _n_to_prune(amount, size: int) -> int:
    return int(amount) if isinstance(amount, numbers.Integral) else round(amount * size)


def _validate_structured(t: Tensor) -> None:
    if t.ndim <= 1:
        raise ValueError(
            "Structured pruning can only be applied to multidimensional tensors. Found tensor "
            f"of shape {t.shape} with {t.ndim} dims"
        )


def _zero_at(mask: Tensor, flat_index: Tensor) -> Tensor:
    """``mask`` with the given flat positions set to 0."""
    flat = _F.reshape(mask, (-1,))
    hit = _F.scatter_add_axis(
        zeros_like(flat), flat_index, _F.cast(ones_like(flat_index), flat.dtype), 0
    )
    return _F.reshape(_F.where(_F.gt(hit, 0), 0.0, flat), tuple(mask.shape))


def _channel_mask(t: Tensor, dim: int, keep: Tensor) -> Tensor:
    """Ones on the channels ``keep`` (bool, along ``dim``), zeros elsewhere, shaped as t."""
    shape = [1] * t.ndim
    shape[dim] = t.shape[dim]
    return _F.cast(_F.expand(_F.reshape(keep, tuple(shape)), tuple(t.shape)), t.dtype)


class BasePruningMethod(ABC):
    """A pruning method: ``compute_mask``, and the forward pre-hook that applies the mask."""

    _tensor_name: str

    def __call__(self, module: Module, inputs) -> None:
        setattr(module, self._tensor_name, self.apply_mask(module))

    @abstractmethod
    def compute_mask(self, t: Tensor, default_mask: Tensor) -> Tensor: ...

    def apply_mask(self, module: Module) -> Tensor:
        orig = getattr(module, self._tensor_name + "_orig")
        mask = getattr(module, self._tensor_name + "_mask")
        return _F.mul(orig, _F.cast(mask, orig.dtype))

    @classmethod
    def apply(cls, module: Module, name: str, *args, importance_scores=None, **kwargs):
        old = None
        for key, hook in module._forward_pre_hooks.items():
            if isinstance(hook, BasePruningMethod) and hook._tensor_name == name:
                old = (key, hook)
        method = cls(*args, **kwargs)
        method._tensor_name = name
        if old is not None:  # prune again: a container of both, on what is left
            key, hook = old
            container = hook if isinstance(hook, PruningContainer) else PruningContainer(hook)
            container.add_pruning_method(method)
            method = container
            del module._forward_pre_hooks[key]
        orig = getattr(module, name + "_orig") if old is not None else getattr(module, name)
        if importance_scores is not None and tuple(importance_scores.shape) != tuple(orig.shape):
            raise ValueError(
                f"importance_scores should have the same shape as parameter {name} of {module}"
            )
        scores = importance_scores if importance_scores is not None else orig
        with no_grad():
            if old is None:
                default_mask = ones_like(orig)
            else:
                default_mask = _F.clone(getattr(module, name + "_mask"))
            mask = method.compute_mask(scores.detach(), default_mask=default_mask)
        if old is None:
            del module._parameters[name]
            module.register_parameter(name + "_orig", orig)
        module.register_buffer(name + "_mask", mask)
        setattr(module, name, method.apply_mask(module))
        module.register_forward_pre_hook(method)
        return method

    def prune(self, t: Tensor, default_mask: Tensor | None = None, importance_scores=None):
        """``t`` with this method's mask applied (without touching any module)."""
        scores = importance_scores if importance_scores is not None else t
        mask = default_mask if default_mask is not None else ones_like(t)
        return _F.mul(t, self.compute_mask(scores, default_mask=mask))

    def remove(self, module: Module) -> None:
        name = self._tensor_name
        with no_grad():
            weight = self.apply_mask(module)
        if hasattr(module, name):
            delattr(module, name)
        orig = module._parameters[name + "_orig"]
        with no_grad():
            orig.copy_(weight)
        del module._parameters[name + "_orig"]
        del module._buffers[name + "_mask"]
        module.register_parameter(name, orig)


class PruningContainer(BasePruningMethod):
    """Successive pruning methods of one tensor; each applies to what the earlier left."""

    def __init__(self, *args) -> None:
        self._pruning_methods: tuple = ()
        if len(args) == 1 and not isinstance(args[0], tuple):
            self._tensor_name = args[0]._tensor_name
            self.add_pruning_method(args[0])
        else:
            for method in args[0] if len(args) == 1 else args:
                self.add_pruning_method(method)

    def add_pruning_method(self, method: BasePruningMethod) -> None:
        if not isinstance(method, BasePruningMethod) and method is not None:
            raise TypeError(f"{type(method)} is not a BasePruningMethod subclass")
        if method is not None and self._tensor_name != method._tensor_name:
            raise ValueError(
                "Can only add pruning methods acting on the parameter named "
                f"'{self._tensor_name}' to PruningContainer. Found '{method._tensor_name}'"
            )
        self._pruning_methods += (method,)

    def __len__(self) -> int:
        return len(self._pruning_methods)

    def __iter__(self):
        return iter(self._pruning_methods)

    def __getitem__(self, idx):
        return self._pruning_methods[idx]

    def compute_mask(self, t: Tensor, default_mask: Tensor) -> Tensor:
        method = self._pruning_methods[-1]
        if method.PRUNING_TYPE == "unstructured":
            # the newest method sees only the entries still kept, as one vector
            keep = _F.reshape(_F.eq(default_mask, 1), (-1,))
            kept_at = _F.nonzero(keep)[:, 0]
            part = method.compute_mask(
                _F.take_axis(_F.reshape(t, (-1,)), kept_at, 0),
                default_mask=_F.take_axis(_F.reshape(default_mask, (-1,)), kept_at, 0),
            )
            flat = _F.reshape(default_mask, (-1,))
            dropped = _F.take_axis(kept_at, _F.nonzero(_F.eq(part, 0))[:, 0], 0)
            return _F.reshape(_zero_at(flat, dropped), tuple(default_mask.shape))
        if method.PRUNING_TYPE == "structured":
            dim = method.dim % t.ndim
            others = tuple(d for d in range(t.ndim) if d != dim)
            kept = _F.nonzero(_F.ne(_F.sum(default_mask, others), 0))[:, 0]
            part = method.compute_mask(
                _F.take_axis(t, kept, dim), default_mask=_F.take_axis(default_mask, kept, dim)
            )
            # the channels pruned now, among those kept before
            part_kept = _F.ne(_F.sum(part, others), 0)
            now = _F.scatter_add_axis(
                _F.cast(zeros_like(_F.sum(default_mask, others)), t.dtype), kept,
                _F.cast(part_kept, t.dtype), 0,
            )  # fmt: skip
            return _F.mul(default_mask, _channel_mask(t, dim, _F.gt(now, 0)))
        if method.PRUNING_TYPE == "global":
            return method.compute_mask(t, default_mask)
        raise ValueError(f"Unrecognized PRUNING_TYPE {method.PRUNING_TYPE}")


class Identity(BasePruningMethod):
    PRUNING_TYPE = "unstructured"

    def compute_mask(self, t, default_mask):
        return default_mask

    @classmethod
    def apply(cls, module, name):
        return super().apply(module, name)


class RandomUnstructured(BasePruningMethod):
    PRUNING_TYPE = "unstructured"

    def __init__(self, amount) -> None:
        _validate_amount_init(amount)
        self.amount = amount

    def compute_mask(self, t, default_mask):
        size = t.numel()
        _validate_amount(self.amount, size)
        k = _n_to_prune(self.amount, size)
        if k == 0:
            return _F.clone(default_mask)
        _, index = _F.topk(_F.reshape(rand(*t.shape, dtype=t.dtype), (-1,)), k)
        return _zero_at(default_mask, index)

    @classmethod
    def apply(cls, module, name, amount):
        return super().apply(module, name, amount=amount)


class L1Unstructured(BasePruningMethod):
    PRUNING_TYPE = "unstructured"

    def __init__(self, amount) -> None:
        _validate_amount_init(amount)
        self.amount = amount

    def compute_mask(self, t, default_mask):
        size = t.numel()
        _validate_amount(self.amount, size)
        k = _n_to_prune(self.amount, size)
        if k == 0:
            return _F.clone(default_mask)
        _, index = _F.topk(_F.reshape(_F.abs(t), (-1,)), k, largest=False)
        return _zero_at(default_mask, index)

    @classmethod
    def apply(cls, module, name, amount, importance_scores=None):
        return super().apply(module, name, amount=amount, importance_scores=importance_scores)


class _Structured(BasePruningMethod):
    PRUNING_TYPE = "structured"

    def _mask_from_scores(self, t, default_mask, scores) -> Tensor:
        _validate_structured(t)
        size = t.shape[self.dim]
        _validate_amount(self.amount, size)
        k = _n_to_prune(self.amount, size)
        if k == 0:
            return default_mask
        _, keep_index = _F.topk(scores, size - k)
        keep = _F.gt(
            _F.scatter_add_axis(
                zeros_like(scores), keep_index, _F.cast(ones_like(keep_index), scores.dtype), 0
            ),
            0,
        )
        return _F.mul(_channel_mask(t, self.dim % t.ndim, keep), default_mask)


class RandomStructured(_Structured):
    def __init__(self, amount, dim: int = -1) -> None:
        _validate_amount_init(amount)
        self.amount, self.dim = amount, dim

    def compute_mask(self, t, default_mask):
        _validate_structured(t)
        scores = rand(t.shape[self.dim], dtype=t.dtype)
        return self._mask_from_scores(t, default_mask, scores)

    @classmethod
    def apply(cls, module, name, amount, dim=-1):
        return super().apply(module, name, amount=amount, dim=dim)


class LnStructured(_Structured):
    def __init__(self, amount, n, dim: int = -1) -> None:
        _validate_amount_init(amount)
        self.amount, self.n, self.dim = amount, n, dim

    def compute_mask(self, t, default_mask):
        _validate_structured(t)
        dim = self.dim % t.ndim
        others = tuple(d for d in range(t.ndim) if d != dim)
        return self._mask_from_scores(t, default_mask, _F.norm(t, self.n, others))

    @classmethod
    def apply(cls, module, name, amount, n, dim, importance_scores=None):
        return super().apply(
            module, name, amount=amount, n=n, dim=dim, importance_scores=importance_scores
        )


class CustomFromMask(BasePruningMethod):
    PRUNING_TYPE = "global"

    def __init__(self, mask) -> None:
        self.mask = mask

    def compute_mask(self, t, default_mask):
        if tuple(default_mask.shape) != tuple(self.mask.shape):
            raise ValueError("mask and the tensor to prune have different shapes")
        return _F.mul(default_mask, _F.cast(self.mask, default_mask.dtype))

    @classmethod
    def apply(cls, module, name, mask):
        return super().apply(module, name, mask=mask)


def identity(module, name):
    Identity.apply(module, name)
    return module


def random_unstructured(module, name, amount):
    RandomUnstructured.apply(module, name, amount)
    return module


def l1_unstructured(module, name, amount, importance_scores=None):
    L1Unstructured.apply(module, name, amount=amount, importance_scores=importance_scores)
    return module


def random_structured(module, name, amount, dim):
    RandomStructured.apply(module, name, amount, dim)
    return module


def ln_structured(module, name, amount, n, dim, importance_scores=None):
    LnStructured.apply(module, name, amount, n, dim, importance_scores=importance_scores)
    return module


def custom_from_mask(module, name, mask):
    CustomFromMask.apply(module, name, mask)
    return module


def global_unstructured(parameters, pruning_method, importance_scores=None, **kwargs):
    """Prune the (module, name) pairs together: the smallest entries over all of them."""
    parameters = list(parameters)
    importance_scores = importance_scores or {}
    scores, masks = [], []
    for module, name in parameters:
        t = importance_scores.get((module, name), getattr(module, name))
        scores.append(_F.reshape(t.detach(), (-1,)))
        mask = getattr(module, name + "_mask", None)
        masks.append(_F.reshape(mask if mask is not None else ones_like(t), (-1,)))
    with no_grad():
        flat_scores, flat_mask = _F.cat(scores), _F.cat(masks)
        method = pruning_method(**kwargs)
        method._tensor_name = "temp"
        if method.PRUNING_TYPE != "unstructured":
            raise TypeError(
                'Only "unstructured" PRUNING_TYPE supported for the `pruning_method`. Found '
                f"method {pruning_method} of type {method.PRUNING_TYPE}"
            )
        container = PruningContainer(method)
        final = container.compute_mask(flat_scores, flat_mask)
    start = 0
    for module, name in parameters:
        param = getattr(module, name)
        n = param.numel()
        part = _F.reshape(final[start : start + n], tuple(param.shape))
        custom_from_mask(module, name, mask=part)
        start += n


def remove(module, name):
    """Make the pruning of ``name`` permanent: one parameter, zeros where pruned."""
    for key, hook in module._forward_pre_hooks.items():
        if isinstance(hook, BasePruningMethod) and hook._tensor_name == name:
            hook.remove(module)
            del module._forward_pre_hooks[key]
            return module
    raise ValueError(
        f"Parameter '{name}' of module {module} has to be pruned before pruning can be removed"
    )


def is_pruned(module) -> bool:
    """Whether any submodule of ``module`` has a pruning hook."""
    return any(
        isinstance(hook, BasePruningMethod)
        for _, m in module.named_modules()
        for hook in m._forward_pre_hooks.values()
    )
