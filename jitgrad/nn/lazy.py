"""Lazy modules: ``LazyLinear``, ``LazyConv*``, ``LazyConvTranspose*``, ``LazyBatchNorm*`` and
``LazyInstanceNorm*`` infer their input size from the first call (or from a loaded state_dict),
then become the ordinary module (``LazyLinear`` -> ``Linear``), as in PyTorch.

Until then their parameters are ``UninitializedParameter`` (buffers ``UninitializedBuffer``):
placeholders with no elements that ``materialize(shape)`` turns into an ordinary Parameter (or
tensor) in place, so references held elsewhere stay valid.
"""

from __future__ import annotations

from itertools import chain

from .. import dtypes
from ..factories import empty
from ..tensor import Tensor
from . import conv_modules as _C
from . import norm_modules as _NM
from .conv import Conv2d
from .layers import Linear
from .module import Module, Parameter
from .normalization import BatchNorm1d, BatchNorm2d

__all__ = [
    "UninitializedParameter", "UninitializedBuffer", "LazyModuleMixin", "LazyLinear",
    "LazyConv1d", "LazyConv2d", "LazyConv3d", "LazyConvTranspose1d", "LazyConvTranspose2d",
    "LazyConvTranspose3d", "LazyBatchNorm1d", "LazyBatchNorm2d", "LazyBatchNorm3d",
    "LazyInstanceNorm1d", "LazyInstanceNorm2d", "LazyInstanceNorm3d",
]  # fmt: skip


class _Uninitialized:
    __slots__ = ()
    cls_to_become: type = Tensor
    _is_uninitialized = True  # (read by Module.load_state_dict, which materializes these)

    def materialize(self, shape, device=None, dtype=None) -> None:
        """Become an ordinary (uninitialised) tensor of ``shape``, in place."""
        dtype = dtypes.as_dtype(dtype) if dtype is not None else self.dtype
        self._data = empty(tuple(shape), dtype=dtype, device=device)._data
        self.__class__ = self.cls_to_become

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    @property
    def shape(self):
        raise ValueError(
            f"Attempted to use an uninitialized parameter in shape. This error happens when "
            "you are using a `LazyModule` or explicitly manipulating "
            f"`torch.nn.parameter.{type(self).__name__}` objects. When using LazyModules Call "
            "`forward` with a dummy batch to initialize the parameters before calling torch "
            "functions"
        )


class UninitializedParameter(_Uninitialized, Parameter):
    """A parameter whose shape is not known yet (see ``materialize``)."""

    __slots__ = ()
    cls_to_become = Parameter

    def __init__(self, requires_grad: bool = True, device=None, dtype=None) -> None:
        dtype = dtypes.as_dtype(dtype) if dtype is not None else None
        Parameter.__init__(self, empty(0, dtype=dtype, device=device), requires_grad)


class UninitializedBuffer(_Uninitialized, Tensor):
    """A buffer whose shape is not known yet (see ``materialize``)."""

    __slots__ = ()

    def __init__(self, requires_grad: bool = False, device=None, dtype=None) -> None:
        dtype = dtypes.as_dtype(dtype) if dtype is not None else None
        data = empty(0, dtype=dtype, device=device)
        self._data, self._vc = data._data, data._vc
        self._grad = self._grad_fn = self._acc = self._base = self._hooks = None
        self._output_nr = 0
        self._retains_grad = False
        self._requires_grad = False


def is_lazy(value) -> bool:
    return isinstance(value, _Uninitialized)


def _infer_parameters(module: Module, args: tuple) -> None:
    module.initialize_parameters(*args)
    if module.has_uninitialized_params():
        raise RuntimeError(f"module {module._get_name()} has not been fully initialized")
    module._initialize_hook.remove()
    if module.cls_to_become is not None:
        module.__class__ = module.cls_to_become


class LazyModuleMixin:
    """Runs ``initialize_parameters(*inputs)`` before the first forward, then becomes
    ``cls_to_become``."""

    cls_to_become = None

    def _lazy_setup(self) -> None:
        self._initialize_hook = self.register_forward_pre_hook(_infer_parameters)

    def has_uninitialized_params(self) -> bool:
        return any(is_lazy(t) for t in chain(self._parameters.values(), self._buffers.values()))

    def initialize_parameters(self, *args, **kwargs) -> None:
        raise NotImplementedError(
            f"initialize_parameters is not implemented for {type(self).__name__}"
        )


class LazyLinear(LazyModuleMixin, Linear):
    """``Linear`` whose ``in_features`` is the last dim of the first input."""

    cls_to_become = Linear

    def __init__(self, out_features: int, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__(0, 0, False)
        self.out_features = out_features
        self.weight = UninitializedParameter(device=device, dtype=dtype)
        if bias:
            self.bias = UninitializedParameter(device=device, dtype=dtype)
        self._lazy_setup()

    def reset_parameters(self) -> None:
        if not self.has_uninitialized_params() and self.in_features != 0:
            super().reset_parameters()

    def initialize_parameters(self, input: Tensor) -> None:
        if not self.has_uninitialized_params():  # (loaded from a state_dict)
            self.in_features = self.weight.shape[1]
        else:
            self.in_features = input.shape[-1]
            self.weight.materialize((self.out_features, self.in_features))
            if self.bias is not None:
                self.bias.materialize((self.out_features,))
            self.reset_parameters()


class _LazyConvMixin(LazyModuleMixin):
    _nd = 0

    def _lazy_init(self, out_channels: int, bias: bool, device, dtype) -> None:
        self.out_channels = out_channels
        self.weight = UninitializedParameter(device=device, dtype=dtype)
        if bias:
            self.bias = UninitializedParameter(device=device, dtype=dtype)
        self._lazy_setup()

    def reset_parameters(self) -> None:
        if not self.has_uninitialized_params() and self.in_channels != 0:
            super().reset_parameters()

    def _get_in_channels(self, input: Tensor) -> int:
        no_batch = self._nd + 1
        if input.ndim not in (no_batch, no_batch + 1):
            raise RuntimeError(
                f"Expected {no_batch}D (unbatched) or {no_batch + 1}D (batched) input to "
                f"{type(self).__name__}, but got input of size: {list(input.shape)}"
            )
        return input.shape[1] if input.ndim == no_batch + 1 else input.shape[0]

    def initialize_parameters(self, input: Tensor, *args, **kwargs) -> None:
        if not self.has_uninitialized_params():  # (loaded from a state_dict)
            w = self.weight.shape
            self.in_channels = w[0] if getattr(self, "transposed", False) else w[1] * self.groups
            return
        self.in_channels = self._get_in_channels(input)
        if self.in_channels % self.groups != 0:
            raise ValueError("in_channels must be divisible by groups")
        k = tuple(self.kernel_size)
        if getattr(self, "transposed", False):
            shape = (self.in_channels, self.out_channels // self.groups, *k)
        else:
            shape = (self.out_channels, self.in_channels // self.groups, *k)
        self.weight.materialize(shape)
        if self.bias is not None:
            self.bias.materialize((self.out_channels,))
        self.reset_parameters()


def _lazy_conv(name: str, base: type, nd: int) -> type:
    def __init__(self, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None):  # fmt: skip
        base.__init__(self, 0, 0, kernel_size, stride, padding, dilation, groups, False,
                      padding_mode)  # fmt: skip
        self._lazy_init(out_channels, bias, device, dtype)

    return type(name, (_LazyConvMixin, base), {
        "__init__": __init__, "cls_to_become": base, "_nd": nd, "__module__": "jitgrad.nn",
        "__doc__": f"``{base.__name__}`` whose ``in_channels`` is read from the first input.",
    })  # fmt: skip


def _lazy_conv_transpose(name: str, base: type, nd: int) -> type:
    def __init__(self, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 groups=1, bias=True, dilation=1, padding_mode="zeros", device=None,
                 dtype=None):  # fmt: skip
        base.__init__(self, 0, 0, kernel_size, stride, padding, output_padding, groups, False,
                      dilation, padding_mode)  # fmt: skip
        self._lazy_init(out_channels, bias, device, dtype)

    return type(name, (_LazyConvMixin, base), {
        "__init__": __init__, "cls_to_become": base, "_nd": nd, "__module__": "jitgrad.nn",
        "__doc__": f"``{base.__name__}`` whose ``in_channels`` is read from the first input.",
    })  # fmt: skip


LazyConv1d = _lazy_conv("LazyConv1d", _C.Conv1d, 1)
LazyConv2d = _lazy_conv("LazyConv2d", Conv2d, 2)
LazyConv3d = _lazy_conv("LazyConv3d", _C.Conv3d, 3)
LazyConvTranspose1d = _lazy_conv_transpose("LazyConvTranspose1d", _C.ConvTranspose1d, 1)
LazyConvTranspose2d = _lazy_conv_transpose("LazyConvTranspose2d", _C.ConvTranspose2d, 2)
LazyConvTranspose3d = _lazy_conv_transpose("LazyConvTranspose3d", _C.ConvTranspose3d, 3)


class _LazyNormMixin(LazyModuleMixin):
    def _lazy_init(self, affine: bool, track_running_stats: bool, bias: bool, device, dtype):
        if affine:
            self.weight = UninitializedParameter(device=device, dtype=dtype)
            if bias:
                self.bias = UninitializedParameter(device=device, dtype=dtype)
        if track_running_stats:
            self.running_mean = UninitializedBuffer(device=device, dtype=dtype)
            self.running_var = UninitializedBuffer(device=device, dtype=dtype)
        self._lazy_setup()

    def reset_parameters(self) -> None:
        if not self.has_uninitialized_params() and self.num_features != 0:
            super().reset_parameters()

    def initialize_parameters(self, input: Tensor) -> None:
        if not self.has_uninitialized_params():  # (loaded from a state_dict)
            known = [t for t in (self.weight, self.running_mean) if t is not None]
            self.num_features = known[0].shape[0] if known else input.shape[1]
            return
        self.num_features = input.shape[1]
        for t in (self.weight, self.bias, self.running_mean, self.running_var):
            if is_lazy(t):
                t.materialize((self.num_features,))
        self.reset_parameters()


def _lazy_norm(name: str, base: type, affine_default: bool, stats_default: bool) -> type:
    def __init__(self, eps=1e-5, momentum=0.1, affine=affine_default,
                 track_running_stats=stats_default, device=None, dtype=None, *,
                 bias=True):  # fmt: skip
        base.__init__(self, 0, eps, momentum, False, False)
        self.affine, self.track_running_stats = affine, track_running_stats
        if track_running_stats:
            self.register_buffer("num_batches_tracked", _zero_count())
        self._lazy_init(affine, track_running_stats, bias, device, dtype)

    return type(name, (_LazyNormMixin, base), {
        "__init__": __init__, "cls_to_become": base, "__module__": "jitgrad.nn",
        "__doc__": f"``{base.__name__}`` whose ``num_features`` is read from the first input.",
    })  # fmt: skip


def _zero_count() -> Tensor:
    from ..factories import tensor

    return tensor(0, dtype=dtypes.int64)


LazyBatchNorm1d = _lazy_norm("LazyBatchNorm1d", BatchNorm1d, True, True)
LazyBatchNorm2d = _lazy_norm("LazyBatchNorm2d", BatchNorm2d, True, True)
LazyBatchNorm3d = _lazy_norm("LazyBatchNorm3d", _NM.BatchNorm3d, True, True)
LazyInstanceNorm1d = _lazy_norm("LazyInstanceNorm1d", _NM.InstanceNorm1d, True, True)
LazyInstanceNorm2d = _lazy_norm("LazyInstanceNorm2d", _NM.InstanceNorm2d, True, True)
LazyInstanceNorm3d = _lazy_norm("LazyInstanceNorm3d", _NM.InstanceNorm3d, True, True)
