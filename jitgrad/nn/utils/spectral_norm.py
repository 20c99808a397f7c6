"""``spectral_norm`` / ``remove_spectral_norm`` (PyTorch's hook-based form): ``weight`` becomes
``weight_orig / sigma``, with sigma, the largest singular value of the weight as a matrix,
estimated by power iteration on the buffers ``weight_u`` and ``weight_v``. In training mode each
call runs ``n_power_iterations`` steps, updating the buffers in place without gradient (so a
compiled step writes them back); in eval mode the stored vectors are used as they are."""

from __future__ import annotations

from ...autograd.grad_mode import no_grad
from ...ops import functions as _F
from ...random import randn
from ...tensor import Tensor
from ..distance import normalize
from ..module import Module, Parameter

__all__ = ["spectral_norm", "remove_spectral_norm", "SpectralNorm"]


class SpectralNorm:
    """The forward pre-hook that recomputes ``module.<name>`` from ``<name>_orig``."""

    def __init__(self, name: str = "weight", n_power_iterations: int = 1, dim: int = 0,
                 eps: float = 1e-12) -> None:  # fmt: skip
        if n_power_iterations <= 0:
            raise ValueError(
                "Expected n_power_iterations to be positive, but got "
                f"n_power_iterations={n_power_iterations}"
            )
        self.name, self.dim, self.eps = name, dim, eps
        self.n_power_iterations = n_power_iterations

    def reshape_weight_to_matrix(self, weight: Tensor) -> Tensor:
        mat = weight
        if self.dim != 0:  # the dim that indexes output features goes first
            order = [self.dim] + [d for d in range(weight.ndim) if d != self.dim]
            mat = _F.permute(mat, tuple(order))
        return _F.reshape(mat, (mat.shape[0], -1))

    def compute_weight(self, module: Module, do_power_iteration: bool) -> Tensor:
        weight = getattr(module, self.name + "_orig")
        u = getattr(module, self.name + "_u")
        v = getattr(module, self.name + "_v")
        mat = self.reshape_weight_to_matrix(weight)
        if do_power_iteration:
            with no_grad():
                for _ in range(self.n_power_iterations):
                    v.copy_(normalize(_F.matmul(_F.transpose(mat, 0, 1), u), dim=0, eps=self.eps))
                    u.copy_(normalize(_F.matmul(mat, v), dim=0, eps=self.eps))
            # (copies: the buffers change in place on the next call, the graph keeps these)
            u, v = _F.clone(u), _F.clone(v)
        sigma = _F.sum(_F.mul(u, _F.matmul(mat, v)))
        return _F.div(weight, sigma)

    def remove(self, module: Module) -> None:
        with no_grad():
            weight = self.compute_weight(module, do_power_iteration=False)
        delattr(module, self.name)
        delattr(module, self.name + "_u")
        delattr(module, self.name + "_v")
        delattr(module, self.name + "_orig")
        module.register_parameter(self.name, Parameter(weight.detach()))

    def __call__(self, module: Module, inputs) -> None:
        setattr(module, self.name, self.compute_weight(module, module.training))

    @staticmethod
    def apply(module: Module, name: str, n_power_iterations: int, dim: int, eps: float):
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, SpectralNorm) and hook.name == name:
                raise RuntimeError(
                    f"Cannot register two spectral_norm hooks on the same parameter {name}"
                )
        fn = SpectralNorm(name, n_power_iterations, dim, eps)
        weight = module._parameters[name]
        with no_grad():
            h, w = fn.reshape_weight_to_matrix(weight).shape
            u = normalize(randn(h, dtype=weight.dtype), dim=0, eps=fn.eps)
            v = normalize(randn(w, dtype=weight.dtype), dim=0, eps=fn.eps)
        delattr(module, name)
        module.register_parameter(name + "_orig", weight)
        setattr(module, name, weight.detach())
        module.register_buffer(name + "_u", u)
        module.register_buffer(name + "_v", v)
        module.register_forward_pre_hook(fn)
        return fn


def _is_transposed_conv(module: Module) -> bool:
    from ..conv_modules import ConvTranspose1d, ConvTranspose2d, ConvTranspose3d

    return isinstance(module, (ConvTranspose1d, ConvTranspose2d, ConvTranspose3d))


def spectral_norm(module: Module, name: str = "weight", n_power_iterations: int = 1,
                  eps: float = 1e-12, dim: int | None = None) -> Module:  # fmt: skip
    """Divide ``module.<name>`` by its spectral norm before every call (dim 1 of a transposed
    convolution's weight, else dim 0, indexes the output features)."""
    if dim is None:
        dim = 1 if _is_transposed_conv(module) else 0
    SpectralNorm.apply(module, name, n_power_iterations, dim, eps)
    return module


def remove_spectral_norm(module: Module, name: str = "weight") -> Module:
    """Undo ``spectral_norm``: ``<name>`` is one parameter again, with the current value."""
    for key, hook in module._forward_pre_hooks.items():
        if isinstance(hook, SpectralNorm) and hook.name == name:
            hook.remove(module)
            del module._forward_pre_hooks[key]
            module._forward_pre_hooks_with_kwargs.pop(key, None)
            return module
    raise ValueError(f"spectral_norm of '{name}' not found in {module}")
