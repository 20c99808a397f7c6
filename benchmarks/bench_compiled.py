"""Compiled whole-step benchmarks: ``jitgrad.compile(step)`` where the step runs zero_grad,
forward, loss, backward and the optimizer update as one call.

Run time and compile time are tracked apart: ``setup`` compiles and warms up, so ``time_step``
measures the steady state; ``CompileTime.track_compile_seconds_w1`` measures a cold compile in a
fresh process with an empty cache directory. The workloads are defined once in
``jitgrad.bench``.
"""

from jitgrad import bench, bench_compile

# Fixed parameter list so result history stays comparable; an unregistered backend is skipped.
BACKENDS = ["numba", "interpreter"]


class _CompiledStep:
    params = BACKENDS
    param_names = ["backend"]
    key = ""

    def setup(self, backend):
        self.run = bench.compiled_runner(self.key, backend)  # traces, compiles, warms up
        if self.run is None:
            raise NotImplementedError(f"backend {backend!r} is not registered")  # asv: skip

    def time_step(self, backend):
        self.run()


class CompiledMLPStep(_CompiledStep):
    """W1: 64 -> 128 -> ReLU -> 10, batch 64, cross-entropy, SGD lr 0.1."""

    key = "W1"


class CompiledWideMLPStep(_CompiledStep):
    """W1b: 64 -> 512 -> 512 -> 10 with ReLUs, batch 256, cross-entropy, SGD lr 0.1."""

    key = "W1b"


class CompiledElementwiseChain(_CompiledStep):
    """W2: sum(tanh(1.5x+0.5)*sigmoid(x) + exp(-x*x)) forward + backward on 1e6 float32."""

    key = "W2"


class CompiledTinyGraph(_CompiledStep):
    """W3: (x*2+1).sum() forward + backward on 10 elements: the cost of one compiled call."""

    key = "W3"


class CompiledDigitsMLPStep(_CompiledStep):
    """W5: the demo's MLP (64-128-64-10, Adam) on a batch of 64 8x8 digit images."""

    key = "W5"


class CompiledDigitsCNNStep(_CompiledStep):
    """W6: the demo's CNN (3x3 convs 16 and 32 with 2x2 max pools, Adam), batch 64."""

    key = "W6"


class CompiledGPTStep(_CompiledStep):
    """W7: the GPT demo's step: 2 pre-norm transformer blocks (width 64, 4 heads, causal
    attention), tied embeddings, AdamW, gradient clipping; 16 sequences of 32 characters."""

    key = "W7"


class CompiledLSTMLanguageModelStep(_CompiledStep):
    """W8: embedding, 2-layer LSTM (hidden 128), linear head over 64 tokens, Adam; 32 sequences
    of 32 tokens (the time loop unrolls into one tape)."""

    key = "W8"


class CompileTime:
    """Seconds to a first compiled step of W1, cold: a fresh process with empty caches."""

    params = BACKENDS
    param_names = ["backend"]
    timeout = 900

    def setup(self, backend):
        if backend not in bench.available_backends():
            raise NotImplementedError(f"backend {backend!r} is not registered")

    def track_compile_seconds_w1(self, backend):
        return bench_compile.cold_seconds(backend)

    track_compile_seconds_w1.unit = "seconds"


class FirstCompiledStep:
    """Each case of the bench's compile-time table (jitgrad/bench_compile.py): seconds from
    the first call to the end of the first compiled call, in fresh processes. Measured once
    for all cases (they share their cache directories), then reported one by one."""

    params = [c.key for c in bench_compile.CASES if c.wait]
    param_names = ["case"]
    timeout = 1800
    results: dict = {}

    def setup_cache(self):
        return bench_compile.measure("numba")

    def track_seconds(self, results, case):
        return results[case]["seconds"]

    track_seconds.unit = "seconds"


class DemoFromEmptyCaches:
    """The demo in a fresh process with empty caches (jitgrad/bench_compile.py): PyTorch
    eager's training seconds over jitgrad's for each model (> 1: jitgrad is faster), at the
    demo's epochs and at ten times as many. Needs torch for the ratio (NaN without it)."""

    params = [[f for f, _ in bench_compile.DEMO_CASES], ["mlp", "cnn"]]
    param_names = ["epochs_factor", "model"]
    timeout = 1800

    def setup_cache(self):
        return bench_compile.measure_demo()

    def track_torch_over_jitgrad(self, results, factor, model):
        ratio = bench_compile.demo_ratio(results[factor][model])
        return float("nan") if ratio is None else ratio

    track_torch_over_jitgrad.unit = "ratio"

    def track_trained_seconds(self, results, factor, model):
        return results[factor][model]["seconds"]

    track_trained_seconds.unit = "seconds"
