"""PyTorch eager on the demo's steps, the baseline the compiled steps are compared with.

Skipped when torch is not installed (it is never a dependency of jitgrad). The workloads are
the same builders as in ``jitgrad.bench``, run on the ``torch`` module.
"""

import importlib

from jitgrad import bench


class TorchEagerStep:
    params = ["W1", "W5", "W6", "W7", "W8"]
    param_names = ["workload"]

    def setup(self, key):
        try:
            torch = importlib.import_module("torch")
        except ImportError:
            raise NotImplementedError("torch is not installed") from None  # asv: skip
        torch.set_num_threads(1)
        fn, args = bench.workload(key).setup(torch)
        fn(*args)  # the first step allocates .grad buffers and optimizer state
        self.run = lambda: fn(*args)

    def time_step(self, key):
        self.run()
