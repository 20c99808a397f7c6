"""``nn.MultiheadAttention`` and ``nn.functional.multi_head_attention_forward``: PyTorch's
multi-head attention (parameters, masks, errors) as a composite of linear projections and
``scaled_dot_product_attention`` (or, when the weights are asked for, an explicit softmax)."""

from __future__ import annotations

import math
import warnings

from .. import dtypes as jg_dtypes
from ..ops import functions as _F
from ..tensor import Tensor
from .attention import _NEG_INF, _name, scaled_dot_product_attention
from .module import Module, Parameter


def _canonical_mask(
    mask: Tensor | None, name: str, other: Tensor | None, other_name: str, dtype
) -> Tensor | None:
    """A bool mask (True = may not attend) as a float one (-inf there, 0 elsewhere) of ``dtype``;
    a float mask is returned as it is. Other dtypes are refused, as PyTorch does."""
    if mask is None:
        return None
    if mask.dtype != jg_dtypes.bool_ and not mask.dtype.is_floating_point:
        raise AssertionError(
            f"only bool and floating types of {name} are supported (got {_name(mask)}); pass a "
            "bool mask (True marks positions that may not be attended) or a float mask that is "
            "added to the attention scores."
        )
    if other is not None and other.dtype != mask.dtype:
        warnings.warn(
            f"Support for mismatched {name} and {other_name} is deprecated. Use same type for "
            "both instead.",
            UserWarning,
            stacklevel=4,
        )
    if mask.dtype.is_floating_point:
        return mask
    return _F.where(mask, _F.const(_NEG_INF, dtype), _F.const(0.0, dtype))


def _mha_shape_check(query, key, value, key_padding_mask, attn_mask, num_heads) -> bool:
    """Whether the call is batched; PyTorch's checks of the inputs' ranks."""
    if query.ndim == 3:
        kind, rank, kpm_rank = "batched (3-D)", 3, 2
    elif query.ndim == 2:
        kind, rank, kpm_rank = "unbatched (2-D)", 2, 1
    else:
        raise AssertionError(
            "query should be unbatched 2D or batched 3D tensor but received "
            f"{query.ndim}-D query tensor"
        )
    if key.ndim != rank or value.ndim != rank:
        raise AssertionError(
            f"For {kind} `query`, expected `key` and `value` to be {rank}-D but found "
            f"{key.ndim}-D and {value.ndim}-D tensors respectively"
        )
    if key_padding_mask is not None and key_padding_mask.ndim != kpm_rank:
        raise AssertionError(
            f"For {kind} `query`, expected `key_padding_mask` to be `None` or {kpm_rank}-D but "
            f"found {key_padding_mask.ndim}-D tensor instead"
        )
    if attn_mask is not None:
        if attn_mask.ndim not in (2, 3):
            raise AssertionError(
                f"For {kind} `query`, expected `attn_mask` to be `None`, 2-D or 3-D but found "
                f"{attn_mask.ndim}-D tensor instead"
            )
        if rank == 2 and attn_mask.ndim == 3:
            expected = (num_heads, query.shape[0], key.shape[0])
            if tuple(attn_mask.shape) != expected:
                raise AssertionError(
                    f"Expected `attn_mask` shape to be {expected} but got {attn_mask.shape}"
                )
    return rank == 3


def _check_features(x: Tensor, w: Tensor, what: str) -> None:
    if x.shape[-1] != w.shape[-1]:
        raise RuntimeError(
            f"mat1 and mat2 shapes cannot be multiplied: the {what} has {x.shape[-1]} features "
            f"but its projection expects {w.shape[-1]}; give MultiheadAttention kdim/vdim equal "
            "to the key's and value's feature sizes."
        )


def _in_projection(query, key, value, packed_w, packed_b, separate):
    """q, k, v projections: with the packed (3E, E) weight, one product for self-attention and
    two where key is value; with ``separate`` (q, k, v) weights, three."""
    from .functional import linear

    if separate is not None:
        w_q, w_k, w_v = separate
    else:
        w_q = w_k = w_v = packed_w
    for x, w, what in ((query, w_q, "query"), (key, w_k, "key"), (value, w_v, "value")):
        _check_features(x, w, what)
    b = (None,) * 3 if packed_b is None else _F.chunk(packed_b, 3, 0)
    if separate is not None:
        return linear(query, w_q, b[0]), linear(key, w_k, b[1]), linear(value, w_v, b[2])
    if query is key and key is value:
        return _F.chunk(linear(query, packed_w, packed_b), 3, -1)
    e = packed_w.shape[1]
    w_q, w_kv = _F.split(packed_w, [e, 2 * e], 0)
    b_q, b_kv = (None, None) if packed_b is None else _F.split(packed_b, [e, 2 * e], 0)
    q = linear(query, w_q, b_q)
    if key is value:
        return (q, *_F.chunk(linear(key, w_kv, b_kv), 2, -1))
    w_k, w_v = _F.chunk(w_kv, 2, 0)
    b_k, b_v = (None, None) if b_kv is None else _F.chunk(b_kv, 2, 0)
    return q, linear(key, w_k, b_k), linear(value, w_v, b_v)


def multi_head_attention_forward(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    embed_dim_to_check: int,
    num_heads: int,
    in_proj_weight: Tensor | None,
    in_proj_bias: Tensor | None,
    bias_k: Tensor | None,
    bias_v: Tensor | None,
    add_zero_attn: bool,
    dropout_p: float,
    out_proj_weight: Tensor,
    out_proj_bias: Tensor | None,
    training: bool = True,
    key_padding_mask: Tensor | None = None,
    need_weights: bool = True,
    attn_mask: Tensor | None = None,
    use_separate_proj_weight: bool = False,
    q_proj_weight: Tensor | None = None,
    k_proj_weight: Tensor | None = None,
    v_proj_weight: Tensor | None = None,
    static_k: Tensor | None = None,
    static_v: Tensor | None = None,
    average_attn_weights: bool = True,
    is_causal: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Multi-head attention over sequence-first inputs ((L, N, E) or unbatched (L, E)), with
    PyTorch's masks: bool masks mark with True what may *not* be attended, float masks are
    added to the scores; ``attn_mask`` is (L, S) or (N*num_heads, L, S), ``key_padding_mask``
    (N, S). Returns the output and, with ``need_weights``, the attention weights (averaged over
    heads unless ``average_attn_weights=False``)."""
    from .functional import dropout, linear

    batched = _mha_shape_check(query, key, value, key_padding_mask, attn_mask, num_heads)
    if not batched:
        query, key, value = (_F.unsqueeze(t, 1) for t in (query, key, value))
        if key_padding_mask is not None:
            key_padding_mask = _F.unsqueeze(key_padding_mask, 0)
    tgt_len, bsz, embed_dim = query.shape
    given_kpm_shape = None if key_padding_mask is None else tuple(key_padding_mask.shape)
    key_padding_mask = _canonical_mask(
        key_padding_mask, "key_padding_mask", attn_mask, "attn_mask", query.dtype
    )
    if is_causal and attn_mask is None:
        raise RuntimeError(
            "Need attn_mask if specifying the is_causal hint. You may use the Transformer "
            "module method `generate_square_subsequent_mask` to create this mask."
        )
    if is_causal and key_padding_mask is None and not need_weights:
        attn_mask = None  # the hint alone: attention masks keys after each query
    else:
        attn_mask = _canonical_mask(attn_mask, "attn_mask", None, "", query.dtype)
        is_causal = False
    if embed_dim != embed_dim_to_check:
        raise AssertionError(
            f"was expecting embedding dimension of {embed_dim_to_check}, but got {embed_dim}"
        )
    head_dim = embed_dim // num_heads
    if head_dim * num_heads != embed_dim:
        raise AssertionError(f"embed_dim {embed_dim} not divisible by num_heads {num_heads}")
    if use_separate_proj_weight:
        if tuple(key.shape[:2]) != tuple(value.shape[:2]):
            raise AssertionError(
                f"key's sequence and batch dims {key.shape[:2]} do not match value's "
                f"{value.shape[:2]}"
            )
        separate = (q_proj_weight, k_proj_weight, v_proj_weight)
    else:
        if key.shape != value.shape:
            raise AssertionError(f"key shape {key.shape} does not match value shape {value.shape}")
        separate = None
    src_len = key.shape[0]
    if attn_mask is not None:
        if attn_mask.ndim == 2:
            if tuple(attn_mask.shape) != (tgt_len, src_len):
                raise RuntimeError(
                    f"The shape of the 2D attn_mask is {attn_mask.shape}, but should be "
                    f"{(tgt_len, src_len)}."
                )
            attn_mask = _F.unsqueeze(attn_mask, 0)
        elif tuple(attn_mask.shape) != (bsz * num_heads, tgt_len, src_len):
            raise RuntimeError(
                f"The shape of the 3D attn_mask is {attn_mask.shape}, but should be "
                f"{(bsz * num_heads, tgt_len, src_len)}. (A 3-D mask holds one (L, S) mask per "
                "batch entry and head, batch-major.)"
            )
    q, k, v = _in_projection(query, key, value, in_proj_weight, in_proj_bias, separate)
    if bias_k is not None and bias_v is not None:
        if static_k is not None:
            raise AssertionError("bias cannot be added to static key.")
        if static_v is not None:
            raise AssertionError("bias cannot be added to static value.")
        k = _F.cat([k, _F.expand(bias_k, 1, bsz, embed_dim)], 0)
        v = _F.cat([v, _F.expand(bias_v, 1, bsz, embed_dim)], 0)
        attn_mask = _pad_last(attn_mask)
        key_padding_mask = _pad_last(key_padding_mask)
    elif bias_k is not None:
        raise AssertionError("bias_k is set but bias_v is None")
    elif bias_v is not None:
        raise AssertionError("bias_v is set but bias_k is None")
    # (L, N, E) -> (N*H, L, head_dim), batch-major as PyTorch lays out the heads
    n = bsz * num_heads
    q = _heads(q, n, head_dim)
    k = _static(static_k, "k", n, head_dim) if static_k is not None else _heads(k, n, head_dim)
    v = _static(static_v, "v", n, head_dim) if static_v is not None else _heads(v, n, head_dim)
    if add_zero_attn:
        from ..factories import zeros

        zero = zeros((bsz * num_heads, 1, head_dim), dtype=k.dtype)
        k, v = _F.cat([k, zero], 1), _F.cat([v, zero], 1)
        attn_mask = _pad_last(attn_mask)
        key_padding_mask = _pad_last(key_padding_mask)
    src_len = k.shape[1]
    if key_padding_mask is not None:
        if tuple(key_padding_mask.shape) != (bsz, src_len):
            hint = " (it is (batch, source length) whatever the inputs' layout)"
            if given_kpm_shape == (key.shape[0], bsz) and key.shape[0] != bsz:
                hint = (
                    "; the mask is (source length, batch) for these inputs: they look "
                    "batch-major, so build MultiheadAttention with batch_first=True, or pass "
                    "(L, N, E) inputs"
                )
            raise AssertionError(
                f"expecting key_padding_mask shape of {(bsz, src_len)}, but got "
                f"{key_padding_mask.shape}{hint}"
            )
        kpm = _F.reshape(
            _F.expand(
                _F.reshape(key_padding_mask, (bsz, 1, 1, src_len)), bsz, num_heads, 1, src_len
            ),
            (bsz * num_heads, 1, src_len),
        )
        attn_mask = kpm if attn_mask is None else _F.add(attn_mask, kpm)
    if not training:
        dropout_p = 0.0
    if need_weights:
        scores = _F.matmul(_F.mul(q, math.sqrt(1.0 / head_dim)), _F.transpose(k, -2, -1))
        if attn_mask is not None:
            scores = _F.add(attn_mask, scores)
        attn = _F.softmax(scores, -1)
        if dropout_p > 0.0:
            attn = dropout(attn, dropout_p)
        out = _F.reshape(_F.transpose(_F.matmul(attn, v), 0, 1), (tgt_len * bsz, embed_dim))
        out = _F.reshape(linear(out, out_proj_weight, out_proj_bias), (tgt_len, bsz, embed_dim))
        attn = _F.reshape(attn, (bsz, num_heads, tgt_len, src_len))
        if average_attn_weights:
            attn = _F.mean(attn, 1)
        if not batched:
            out, attn = _F.squeeze(out, 1), _F.squeeze(attn, 0)
        return out, attn
    if attn_mask is not None:
        if attn_mask.shape[0] == 1:
            attn_mask = _F.unsqueeze(attn_mask, 0)
        else:
            attn_mask = _F.reshape(attn_mask, (bsz, num_heads, -1, src_len))
    q = _F.reshape(q, (bsz, num_heads, tgt_len, head_dim))
    k = _F.reshape(k, (bsz, num_heads, src_len, head_dim))
    v = _F.reshape(v, (bsz, num_heads, src_len, head_dim))
    out = scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal)
    out = _F.reshape(_F.permute(out, (2, 0, 1, 3)), (bsz * tgt_len, embed_dim))
    out = _F.reshape(linear(out, out_proj_weight, out_proj_bias), (tgt_len, bsz, embed_dim))
    return (out if batched else _F.squeeze(out, 1)), None


def _heads(t: Tensor, n: int, head_dim: int) -> Tensor:
    """(S, N, E) -> (N*H, S, head_dim): the heads of each batch entry next to each other."""
    return _F.transpose(_F.reshape(t, (t.shape[0], n, head_dim)), 0, 1)


def _pad_last(mask: Tensor | None) -> Tensor | None:
    """One more key position (a bias key or the zero key), which every query may attend."""
    if mask is None:
        return None
    from .functional import pad

    return pad(mask, (0, 1))


def _static(t: Tensor, which: str, n: int, head_dim: int) -> Tensor:
    if t.shape[0] != n:
        raise AssertionError(f"expecting static_{which}.size(0) of {n}, but got {t.shape[0]}")
    if t.shape[2] != head_dim:
        raise AssertionError(
            f"expecting static_{which}.size(2) of {head_dim}, but got {t.shape[2]}"
        )
    return t


class MultiheadAttention(Module):
    """Attention from ``num_heads`` heads over projections of query, key and value, then an
    output projection (PyTorch's ``nn.MultiheadAttention``: same parameters, names, init and
    masks). Inputs are (L, N, E) — (N, L, E) with ``batch_first`` — or unbatched (L, E);
    ``forward`` returns ``(output, weights)``, weights ``None`` when ``need_weights=False``."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(
                "embed_dim and num_heads must be greater than 0, got "
                f"embed_dim={embed_dim} and num_heads={num_heads} instead"
            )
        super().__init__()
        from ..factories import empty
        from .transformer import NonDynamicallyQuantizableLinear

        kw = {"dtype": jg_dtypes.as_dtype(dtype) if dtype is not None else None, "device": device}
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        if self.head_dim * num_heads != embed_dim:
            raise AssertionError(
                f"embed_dim must be divisible by num_heads (got embed_dim={embed_dim} and "
                f"num_heads={num_heads}); each head gets embed_dim // num_heads features."
            )
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(empty((3 * embed_dim, embed_dim), **kw))
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.q_proj_weight = Parameter(empty((embed_dim, embed_dim), **kw))
            self.k_proj_weight = Parameter(empty((embed_dim, self.kdim), **kw))
            self.v_proj_weight = Parameter(empty((embed_dim, self.vdim), **kw))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(empty(3 * embed_dim, **kw))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = NonDynamicallyQuantizableLinear(embed_dim, embed_dim, bias=bias, **kw)
        if add_bias_kv:
            self.bias_k = Parameter(empty((1, 1, embed_dim), **kw))
            self.bias_v = Parameter(empty((1, 1, embed_dim), **kw))
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        from . import init

        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            init.xavier_uniform_(self.q_proj_weight)
            init.xavier_uniform_(self.k_proj_weight)
            init.xavier_uniform_(self.v_proj_weight)
        if self.in_proj_bias is not None:
            init.constant_(self.in_proj_bias, 0.0)
            init.constant_(self.out_proj.bias, 0.0)
        if self.bias_k is not None:
            init.xavier_normal_(self.bias_k)
        if self.bias_v is not None:
            init.xavier_normal_(self.bias_v)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        batched = query.ndim == 3
        key_padding_mask = _canonical_mask(
            key_padding_mask, "key_padding_mask", attn_mask, "attn_mask", query.dtype
        )
        attn_mask = _canonical_mask(attn_mask, "attn_mask", None, "", query.dtype)
        if self.batch_first and batched:
            # keep self-attention's shared inputs shared: one projection instead of three
            if key is value:
                if query is key:
                    query = key = value = _F.transpose(query, 1, 0)
                else:
                    query, key = (_F.transpose(t, 1, 0) for t in (query, key))
                    value = key
            else:
                query, key, value = (_F.transpose(t, 1, 0) for t in (query, key, value))
        separate = not self._qkv_same_embed_dim
        out, weights = multi_head_attention_forward(
            query,
            key,
            value,
            self.embed_dim,
            self.num_heads,
            self.in_proj_weight,
            self.in_proj_bias,
            self.bias_k,
            self.bias_v,
            self.add_zero_attn,
            self.dropout,
            self.out_proj.weight,
            self.out_proj.bias,
            training=self.training,
            key_padding_mask=key_padding_mask,
            need_weights=need_weights,
            attn_mask=attn_mask,
            use_separate_proj_weight=separate,
            q_proj_weight=self.q_proj_weight if separate else None,
            k_proj_weight=self.k_proj_weight if separate else None,
            v_proj_weight=self.v_proj_weight if separate else None,
            average_attn_weights=average_attn_weights,
            is_causal=is_causal,
        )
        if self.batch_first and batched:
            out = _F.transpose(out, 1, 0)
        return out, weights
