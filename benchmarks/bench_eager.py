"""Eager-mode benchmarks: per-op dispatch overhead and one MLP training step.

The workloads are defined once in ``jitgrad.bench`` (also used by ``python -m jitgrad bench``);
these suites only time them.
"""

import jitgrad
from jitgrad import bench
from jitgrad.ops import loops


class PerOpOverhead:
    """Tiny inputs, so the time is dispatch and autograd bookkeeping, not arithmetic."""

    def setup(self):
        self.tiny_fn, self.tiny_args = bench.setup_tiny_graph(jitgrad)
        self.add_fn, self.add_args = bench.setup_single_add(jitgrad)

    def time_tiny_graph_fwd_bwd(self):
        # (x*2+1).sum() forward + backward on 10 elements
        self.tiny_fn(*self.tiny_args)

    def time_single_add(self):
        self.add_fn(*self.add_args)


class MLPTrainStep:
    """64 -> 128 -> ReLU -> 10, batch 64, cross-entropy, SGD lr 0.1."""

    def setup(self):
        self.fn, self.args = bench.setup_mlp_step(jitgrad)
        self.fn(*self.args)  # first step allocates .grad buffers: not steady state
        loops.wait()  # (and the compiled eager loops it uses are ready)

    def time_train_step(self):
        self.fn(*self.args)

    def peakmem_train_step(self):
        self.fn(*self.args)


class ElementwiseChain:
    """sum(tanh(1.5x+0.5)*sigmoid(x) + exp(-x*x)) forward + backward on 1e6 float32."""

    def setup(self):
        self.fn, self.args = bench.setup_elementwise_chain(jitgrad)

    def time_fwd_bwd(self):
        self.fn(*self.args)


class GPTStep:
    """W7: the GPT demo's step (2 transformer blocks, width 64, AdamW, clipping), batch 16."""

    def setup(self):
        self.fn, self.args = bench.setup_gpt_step(jitgrad)
        self.fn(*self.args)  # the first step allocates .grad buffers and optimizer state
        loops.wait()

    def time_train_step(self):
        self.fn(*self.args)


class LSTMLanguageModelStep:
    """W8: embedding, 2-layer LSTM (hidden 128), linear head over 64 tokens, Adam; batch 32 of
    32 tokens."""

    def setup(self):
        self.fn, self.args = bench.setup_lstm_lm_step(jitgrad)
        self.fn(*self.args)  # the first step allocates .grad buffers and optimizer state
        loops.wait()

    def time_train_step(self):
        self.fn(*self.args)
