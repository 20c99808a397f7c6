"""``python -m jitgrad demo --model gpt``: a character-level GPT trained with a compiled step.

The text is the source of a few modules of Python's standard library, read at run time from
the running interpreter's installation (every machine with Python has it; no download). The
model is a small decoder-only transformer written the way PyTorch users write one: token and
position embeddings, pre-norm blocks of causal self-attention and a GELU MLP, a final layer
norm, and an output layer that shares its weight with the token embedding. Training uses AdamW
with two parameter groups (weight decay on matrices only), a linear warm-up and cosine decay
of the learning rate written into ``param_groups`` before every step, gradient clipping and
``zero_grad(set_to_none=True)``; the whole step is one ``jitgrad.compile`` call.

``build_gpt(lib, ...)`` takes the library module (``jitgrad`` or ``torch``), so the benchmark
workload W7 in ``jitgrad.bench`` times exactly this step on both.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import math
import os
import sysconfig
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

import jitgrad as jg

# the standard-library modules whose source is the training text (about 0.5 MB)
SOURCES = ("argparse.py", "textwrap.py", "inspect.py", "dataclasses.py", "typing.py")


@dataclass(frozen=True)
class GPTConfig:
    vocab: int = 96
    block: int = 32  # context length
    layers: int = 2
    heads: int = 4
    width: int = 64
    dropout: float = 0.0
    manual_attention: bool = False  # a masked softmax written out instead of sdpa


# -- the model, on jitgrad or torch --------------------------------------------------------------
def build_gpt(lib: ModuleType, cfg: GPTConfig) -> Any:
    """A GPT on ``lib`` (``jitgrad`` or ``torch``): ``model(idx) -> logits`` for token ids
    ``idx`` of shape (B, T), T <= cfg.block."""
    nn = importlib.import_module(lib.__name__ + ".nn")
    F = importlib.import_module(lib.__name__ + ".nn.functional")

    class CausalSelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
            self.proj = nn.Linear(cfg.width, cfg.width)
            self.drop = nn.Dropout(cfg.dropout)
            causal = lib.tril(lib.ones(cfg.block, cfg.block, dtype=lib.bool))
            self.register_buffer("causal", causal.view(1, 1, cfg.block, cfg.block), False)

        def forward(self, x):
            b, t, c = x.shape
            q, k, v = self.qkv(x).split(c, dim=2)
            q, k, v = (z.view(b, t, cfg.heads, c // cfg.heads).transpose(1, 2) for z in (q, k, v))
            if cfg.manual_attention:
                att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
                att = att.masked_fill(~self.causal[:, :, :t, :t], float("-inf"))
                y = self.drop(F.softmax(att, dim=-1)) @ v
            else:
                p = cfg.dropout if self.training else 0.0
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
            y = y.transpose(1, 2).contiguous().view(b, t, c)
            return self.drop(self.proj(y))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(cfg.width)
            self.attn = CausalSelfAttention()
            self.ln2 = nn.LayerNorm(cfg.width)
            self.mlp = nn.Sequential(
                nn.Linear(cfg.width, 4 * cfg.width),
                nn.GELU(),
                nn.Linear(4 * cfg.width, cfg.width),
                nn.Dropout(cfg.dropout),
            )

        def forward(self, x):
            x = x + self.attn(self.ln1(x))
            return x + self.mlp(self.ln2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(cfg.vocab, cfg.width)
            self.pos = nn.Embedding(cfg.block, cfg.width)
            self.drop = nn.Dropout(cfg.dropout)
            self.blocks = nn.ModuleList([Block() for _ in range(cfg.layers)])
            self.ln = nn.LayerNorm(cfg.width)
            self.head = nn.Linear(cfg.width, cfg.vocab, bias=False)
            self.head.weight = self.tok.weight  # tied: one Parameter in two modules
            self.apply(self._init)

        @staticmethod
        def _init(m):
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)

        def forward(self, idx):
            t = idx.shape[1]
            x = self.drop(self.tok(idx) + self.pos(lib.arange(t)))
            for block in self.blocks:
                x = block(x)
            return self.head(self.ln(x))

    return GPT()


def make_optimizer(lib: ModuleType, model: Any, lr: float, weight_decay: float = 0.1) -> Any:
    """AdamW with weight decay on matrices only (embeddings and linear weights), none on
    biases and layer norms: two parameter groups, as GPT training code usually sets them."""
    optim = importlib.import_module(lib.__name__ + ".optim")
    params = list(model.parameters())  # deduplicated: the tied weight once
    decay = [p for p in params if p.dim() >= 2]
    rest = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]
    return optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


def gpt_step(lib: ModuleType, model: Any, opt: Any, x: Any, y: Any, clip: float = 1.0) -> Any:
    """One training step: the same code runs eagerly, compiled, and on torch."""
    F = importlib.import_module(lib.__name__ + ".nn.functional")
    utils = importlib.import_module(lib.__name__ + ".nn.utils")
    logits = model(x)
    loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return loss.detach()


def learning_rate(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then cosine decay to peak / 10."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.45 * (1.0 + math.cos(math.pi * min(1.0, progress))))


# -- data ---------------------------------------------------------------------------------------
def load_text() -> str:
    """The training text: the standard-library sources named in SOURCES, as printable ASCII."""
    root = sysconfig.get_paths()["stdlib"]
    parts = []
    for name in SOURCES:
        try:
            with open(os.path.join(root, name), encoding="utf-8") as f:
                parts.append(f.read())
        except OSError:
            continue
    if not parts:
        raise SystemExit(f"the GPT demo reads Python's own sources from {root}; none was found")
    text = "\n".join(parts)
    return "".join(c if 32 <= ord(c) < 127 or c == "\n" else " " for c in text)


class CharData:
    """Characters as token ids (the vocabulary is the text's own characters), split 90/10."""

    def __init__(self, text: str, block: int, seed: int):
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}
        ids = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
        table = np.zeros(128, dtype=np.int64)
        table[[ord(c) for c in self.chars]] = np.arange(len(self.chars))
        data = table[ids]
        cut = int(0.9 * len(data))
        self.train, self.val = data[:cut], data[cut:]
        self.block = block
        self.rng = np.random.default_rng(seed)

    @property
    def vocab(self) -> int:
        return len(self.chars)

    def batch(self, size: int, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        data = self.train if split == "train" else self.val
        starts = self.rng.integers(0, len(data) - self.block - 1, size)
        x = np.stack([data[s : s + self.block] for s in starts])
        y = np.stack([data[s + 1 : s + 1 + self.block] for s in starts])
        return x, y

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def encode(self, s: str) -> list[int]:
        return [self.index.get(c, 0) for c in s]


# -- evaluation and sampling --------------------------------------------------------------------
def validation_loss(model: Any, data: CharData, batch: int, batches: int = 4) -> float:
    import jitgrad.nn.functional as F

    was = model.training
    model.eval()
    total = 0.0
    with jg.no_grad():
        for _ in range(batches):
            x, y = data.batch(batch, "val")
            logits = model(jg.from_numpy(x))
            total += F.cross_entropy(logits.view(-1, data.vocab), jg.from_numpy(y).view(-1)).item()
    model.train(was)
    return total / batches


def sample(model: Any, data: CharData, prompt: str, n: int, temperature=0.8, top_k=10) -> str:
    """``n`` characters after ``prompt``: softmax over the top_k logits, multinomial draws."""
    import jitgrad.nn.functional as F

    was = model.training
    model.eval()
    ids = jg.tensor([data.encode(prompt)])
    with jg.no_grad():
        for _ in range(n):
            logits = model(ids[:, -data.block :])[:, -1, :] / temperature
            top, _ = jg.topk(logits, top_k)
            logits = logits.masked_fill(logits < top[:, -1:], float("-inf"))
            nxt = jg.multinomial(F.softmax(logits, dim=-1), 1)
            ids = jg.cat([ids, nxt], dim=1)
    model.train(was)
    return data.decode(ids[0].tolist())


# -- the main job -------------------------------------------------------------------------------
def _torch_seconds_per_step(cfg: GPTConfig, batch: int, lr: float) -> float | None:
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        return None
    from .bench import time_call

    fn, args = setup_gpt_step(torch, cfg=cfg, batch=batch, lr=lr)
    return time_call(lambda: fn(*args), repeat=3)


def setup_gpt_step(
    lib: ModuleType, cfg: GPTConfig | None = None, batch: int = 16, lr: float = 3e-3, seed=0
) -> tuple[Any, tuple]:
    """(step, args) for one GPT training step on ``lib`` with a random batch of token ids."""
    cfg = cfg or GPTConfig()
    lib.manual_seed(seed)
    model = build_gpt(lib, cfg)
    opt = make_optimizer(lib, model, lr)
    x = lib.randint(0, cfg.vocab, (batch, cfg.block))
    y = lib.randint(0, cfg.vocab, (batch, cfg.block))
    return (lambda m, o, x, y: gpt_step(lib, m, o, x, y)), (model, opt, x, y)


def run(args: argparse.Namespace) -> dict:
    from .demo import _progress

    text = load_text()
    jg.manual_seed(args.seed)
    data = CharData(text, GPTConfig.block, args.seed)
    cfg = GPTConfig(vocab=data.vocab)
    model = build_gpt(jg, cfg)
    steps, batch, peak = args.gpt_steps, 16, args.gpt_lr
    warmup = max(1, steps // 10)
    opt = make_optimizer(jg, model, peak)
    n_params = sum(p.numel() for p in model.parameters())
    eager = args.backend == "eager"

    def step(model, opt, x, y):
        return gpt_step(jg, model, opt, x, y)

    compiled = step if eager else jg.compile(step, backend=args.backend, check=args.check)
    print(
        f"\nGPT: {n_params} parameters ({cfg.layers} layers, {cfg.heads} heads, width "
        f"{cfg.width}, context {cfg.block}), characters of {len(text) // 1000} kB of the "
        f"standard library's source (vocabulary {data.vocab}); AdamW, warm-up + cosine "
        f"lr {peak}, clip 1.0, batch {batch}, {steps} steps, "
        f"{'eager' if eager else f'compiled ({args.backend})'}"
    )
    print(f"validation loss before training: {validation_loss(model, data, 64):.3f}")
    bar = _progress(steps, "gpt")
    t0 = time.perf_counter()
    for i in range(steps):
        lr = learning_rate(i, steps, peak, warmup)
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = data.batch(batch)
        loss = compiled(model, opt, jg.from_numpy(x), jg.from_numpy(y)).item()
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", refresh=False)
    bar.close()
    train_seconds = time.perf_counter() - t0
    val = validation_loss(model, data, 64)
    print(f"trained in {train_seconds:.2f} s; validation loss {val:.3f}")
    print("sample: " + repr(sample(model, data, "def ", 120)))

    x, y = (jg.from_numpy(a) for a in data.batch(batch))
    timings = {}
    from .bench import time_call

    if not eager:
        compiled.wait()
        timings["compiled"] = time_call(lambda: compiled(model, opt, x, y), repeat=3)
    e_model, e_opt = copy.deepcopy((model, opt))
    timings["eager"] = time_call(lambda: step(e_model, e_opt, x, y), repeat=3)
    timings["torch eager"] = _torch_seconds_per_step(cfg, batch, peak)
    cells = [f"{name} {1e6 * s:.0f} µs" for name, s in timings.items() if s is not None]
    print("time per step: " + ", ".join(cells))
    if timings.get("compiled"):
        ratios = [
            f"{timings[k] / timings['compiled']:.1f}x vs {k}"
            for k in ("eager", "torch eager")
            if timings[k]
        ]
        print("compiled speed-up: " + ", ".join(ratios))
        s = compiled.stats
        print(
            f"training calls: {s.traces} traced, {s.eager_calls} eager while the compiled code "
            f"was built ({s.build_seconds:.2f} s, in the background), {s.cache_hits} compiled"
        )
        for reason in s.retrace_reasons:
            print(f"  retrace: {reason}")
    return {"kind": "gpt", "validation_loss": val, "train_seconds": train_seconds}
