"""``functional_call``: run a module with some of its parameters and buffers replaced by given
tensors for one call (the module's own tensors are put back afterwards, even on error)."""

from __future__ import annotations

from ..module import Module

__all__ = ["functional_call"]

_MISSING = object()


def _merged(parameters_and_buffers) -> dict:
    if isinstance(parameters_and_buffers, dict):
        return dict(parameters_and_buffers)
    merged: dict = {}
    for d in parameters_and_buffers:
        for key, value in d.items():
            if key in merged:
                raise ValueError(
                    f"{key} appeared in multiple dictionaries; behavior of functional call is "
                    "ambiguous"
                )
            merged[key] = value
    return merged


def _tie(module: Module, values: dict) -> dict:
    """Every name of a tied tensor gets the value given under any of its names."""
    names: dict = {}
    for getter in (module.named_parameters, module.named_buffers):
        for name, t in getter(remove_duplicate=False):
            names.setdefault(id(t), []).append(name)
    out = dict(values)
    for group in names.values():
        given = [n for n in group if n in values]
        if len(group) < 2 or not given:
            continue
        if len({id(values[n]) for n in given}) > 1:
            raise ValueError(
                f"functional_call got multiple values for keys {sorted(given)}, which are tied. "
                "Consider using tie_weights=False"
            )
        for n in group:
            out[n] = values[given[0]]
    return out


def _swap(module: Module, name: str, value):
    """Put ``value`` at ``name``; returns what was there (or _MISSING)."""
    prefix, _, leaf = name.rpartition(".")
    mod = module.get_submodule(prefix)
    for store in (mod._parameters, mod._buffers):
        if leaf in store:
            old, store[leaf] = store[leaf], value
            return mod, store, leaf, old
    old = mod.__dict__.get(leaf, _MISSING)
    object.__setattr__(mod, leaf, value)
    return mod, None, leaf, old


def functional_call(module: Module, parameters_and_buffers, args=None, kwargs=None, *,
                    tie_weights: bool = True, strict: bool = False):  # fmt: skip
    """``module(*args, **kwargs)`` with the named parameters/buffers replaced for this call."""
    values = _merged(parameters_and_buffers)
    given = list(values)
    if tie_weights:
        values = _tie(module, values)
    if strict:
        expected = [n for n, _ in module.named_parameters(remove_duplicate=False)]
        expected += [n for n, _ in module.named_buffers(remove_duplicate=False)]
        missing = [n for n in expected if n not in values]
        unexpected = [n for n in given if n not in expected]
        errors = []
        if unexpected:
            errors.append("Unexpected key(s): " + ", ".join(repr(k) for k in unexpected) + ".")
        if missing:
            errors.append("Missing key(s): " + ", ".join(repr(k) for k in missing) + ".")
        if errors:
            raise RuntimeError(
                f"Error(s) in reparametrizing for {module._get_name()}:\n\t" + "\n\t".join(errors)
            )
    if args is None:
        args = ()
    elif not isinstance(args, tuple):
        args = (args,)
    saved = []
    try:
        for name, value in values.items():
            saved.append(_swap(module, name, value))
        return module(*args, **(kwargs or {}))
    finally:
        for mod, store, leaf, old in reversed(saved):
            if store is not None:
                store[leaf] = old
            elif old is _MISSING:
                mod.__dict__.pop(leaf, None)
            else:
                object.__setattr__(mod, leaf, old)
