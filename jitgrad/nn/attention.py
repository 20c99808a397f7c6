"""``nn.functional.scaled_dot_product_attention`` as a composite of matmul, a masked softmax and
dropout (PyTorch's math definition)."""

from __future__ import annotations

import math

import numpy as np

from .. import dtypes as jg_dtypes
from ..ops import functions as _F
from ..ops.registry import op
from ..ops.spec import Spec, arg
from ..tensor import Tensor

_NEG_INF = float("-inf")


def _sdpa_ref(q, k, v, attn_mask=None, is_causal=False, scale=None):
    s = q @ np.swapaxes(k, -1, -2) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if is_causal:
        s = np.where(np.tril(np.ones(s.shape[-2:], dtype=bool)), s, -np.inf)
    if attn_mask is not None:
        s = np.where(attn_mask, s, -np.inf) if attn_mask.dtype == bool else s + attn_mask
    m = s.max(-1, keepdims=True)
    e = np.exp(s - np.where(np.isinf(m), 0.0, m))
    total = e.sum(-1, keepdims=True)
    return (e / np.where(total == 0, 1.0, total)) @ v


def _safe_softmax(s: Tensor) -> Tensor:
    """softmax over the last dim; a row masked throughout (all -inf) gives zeros, as PyTorch's
    attention does, rather than NaN."""
    m = _F.amax(s, -1, keepdim=True).detach()
    m = _F.where(_F.eq(m, _NEG_INF), 0.0, m)
    e = _F.exp(_F.sub(s, m))
    total = _F.sum(e, -1, keepdim=True)
    return _F.div(e, _F.where(_F.eq(total, 0), 1.0, total))


@op(
    namespace="nn.functional",
    spec=Spec(
        [arg(2, 3, 4), arg(2, 5, 4), arg(2, 5, 2), arg(3, 5, lo=-1.0, hi=1.0)],
        _sdpa_ref,
        params={"scale": 0.7},
        differentiable=(0, 1, 2, 3),
    ),
)
def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    """``softmax(q k^T * scale + bias) v`` over the last two dims (leading dims broadcast).

    ``attn_mask``: bool (True takes part) or float (added to the scores), broadcastable to
    (..., L, S); ``is_causal`` masks keys after each query (top-left aligned); ``scale``
    defaults to ``1/sqrt(E)``; ``dropout_p`` drops attention weights (always, as PyTorch's
    function does: pass 0 in evaluation); ``enable_gqa`` repeats key/value heads (dim -3) to
    the query's head count. A query row that may attend to nothing gives zeros.
    """
    if len({query.dtype, key.dtype, value.dtype}) != 1:
        raise RuntimeError(
            "Expected query, key, and value to have the same dtype, but got query.dtype: "
            f"{_name(query)} key.dtype: {_name(key)} and value.dtype: {_name(value)} instead."
        )
    if is_causal and attn_mask is not None:
        raise RuntimeError(
            "_scaled_dot_product_attention: Explicit attn_mask should not be set when "
            "is_causal=True"
        )
    if attn_mask is not None and attn_mask.dtype not in (jg_dtypes.bool_, jg_dtypes.float32):
        if attn_mask.dtype != query.dtype:
            raise RuntimeError(
                "Expected attn_mask dtype to be bool or float or to match query dtype, but got "
                f"attn_mask.dtype: {_name(attn_mask)} and  query.dtype: {_name(query)} instead."
            )
    if enable_gqa and query.ndim >= 3 and key.ndim >= 3:
        heads, kv_heads = query.shape[-3], key.shape[-3]
        if kv_heads != heads:
            if heads % kv_heads:
                raise RuntimeError(
                    "Number of heads in key and value must divide the number of heads in "
                    f"query (got {kv_heads} and {heads})"
                )
            key = _F.repeat_interleave(key, heads // kv_heads, -3)
            value = _F.repeat_interleave(value, heads // value.shape[-3], -3)
    factor = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = _F.mul(_F.matmul(query, _F.transpose(key, -2, -1)), factor)
    n_q, n_k = query.shape[-2], key.shape[-2]
    if is_causal:
        causal = Tensor._wrap(np.tril(np.ones((n_q, n_k), dtype=bool)))
        scores = _F.where(causal, scores, _NEG_INF)
    if attn_mask is not None:
        if attn_mask.dtype.is_floating_point:
            scores = _F.add(scores, _F.cast(attn_mask, scores.dtype))
        else:
            scores = _F.where(attn_mask, scores, _NEG_INF)
    weights = _safe_softmax(scores)
    if dropout_p > 0.0:
        from .functional import dropout

        weights = dropout(weights, dropout_p, True)
    return _F.matmul(weights, value)


def _name(t: Tensor) -> str:
    names = {"float32": "float", "float64": "double", "float16": "c10::Half", "int64": "long int"}
    return names.get(str(t.dtype).split(".")[-1], str(t.dtype).split(".")[-1])


# PyTorch keeps these next to scaled_dot_product_attention
from .multihead import MultiheadAttention, multi_head_attention_forward  # noqa: E402,F401
