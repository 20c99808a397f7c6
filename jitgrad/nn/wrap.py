"""Modules that only hold options for one ``nn.functional`` call (``nn.SELU``, ``nn.HuberLoss``):
one declaration each, from the function and PyTorch's constructor signature.

``functional_module("HuberLoss", F.huber_loss, lambda reduction="mean", delta=1.0: None)``
gives a class whose constructor takes exactly those parameters (positionally or by keyword,
with PyTorch's defaults), keeps each as an attribute, and whose ``forward(*inputs)`` calls the
function with the inputs and every option the function takes. PyTorch's deprecated
``size_average`` / ``reduce`` arguments fold into ``reduction`` as in the loss modules;
tensor options named in ``buffers`` (a class weight) are registered as buffers, so they follow
``.to()`` and land in the state_dict.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from .module import Module

_LEGACY = ("size_average", "reduce")


def functional_module(
    name: str,
    fn: Callable,
    ctor: Callable,
    *,
    base: type = Module,
    buffers: tuple = (),
    training: bool = False,
    doc: str | None = None,
    repr_options: bool = True,
    extra_repr: Callable | None = None,
) -> type:
    """A Module class named ``name`` whose constructor has ``ctor``'s signature and whose
    forward is ``fn(*inputs, **options)``; ``training`` also passes ``training=self.training``
    (``rrelu``). ``extra_repr(self)`` overrides the ``k=v`` list of options in the repr."""
    signature = inspect.signature(ctor)
    fn_params = inspect.signature(fn).parameters
    options = [p for p in signature.parameters if p not in _LEGACY]
    passed = [p for p in options if p in fn_params]

    def __init__(self, *args, **kwargs) -> None:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        Module.__init__(self)
        if any(k in values for k in _LEGACY):
            from .functional import _reduction

            legacy = (values.pop("size_average"), values.pop("reduce"))
            values["reduction"] = _reduction(*legacy, values["reduction"])
        for key, value in values.items():
            if key in buffers:
                self.register_buffer(key, value)
            else:
                setattr(self, key, value)

    def forward(self, *inputs):
        kwargs = {p: getattr(self, p) for p in passed}
        if training:
            kwargs["training"] = self.training
        return fn(*inputs, **kwargs)

    def options_repr(self) -> str:
        if extra_repr is not None:
            return extra_repr(self)
        if not repr_options:
            return ""
        shown = [
            p for p in options if p not in buffers and not (p == "inplace" and not self.inplace)
        ]
        return ", ".join(f"{p}={getattr(self, p)!r}" for p in shown)

    __init__.__signature__ = signature.replace(
        parameters=[inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)]
        + list(signature.parameters.values())
    )
    body = {
        "__init__": __init__,
        "forward": forward,
        "extra_repr": options_repr,
        "__doc__": doc or f"Applies ``nn.functional.{fn.__name__}`` with the options given.",
        "__module__": "jitgrad.nn",
        "__qualname__": name,
    }
    return type(name, (base,), body)
