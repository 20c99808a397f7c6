"""The command line (``python -m jitgrad demo|bench``) and the docs/CI plumbing around it."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import jitgrad
from jitgrad import bench

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict | None = None, timeout: float = 120) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "jitgrad", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.slow
def test_demo_trains_both_models_end_to_end(tmp_path):
    # One short epoch each, compiled with Numba (the default), with a plot. The timing report,
    # the agreement check and the last line are what a user sees after a full run.
    env = dict(os.environ, JITGRAD_CACHE_DIR=str(tmp_path / "cache"))
    png = tmp_path / "curves.png"
    out = run_cli("demo", "--epochs", "2", "--plot", str(png), env=env, timeout=300)
    assert out.count("compiled step agrees with the reference interpreter") == 2, out
    assert re.search(r"^MLP: \d+ parameters", out, re.M) and re.search(r"^CNN: ", out, re.M)
    speedups = re.findall(r"^compiled speed-up: ([\d.]+)x vs eager", out, re.M)
    assert len(speedups) == 2, out
    # two epochs, one partial last batch: the partial batch retraces but compiles nothing new
    calls = r"^training calls: \d+ traced, \d+ eager .*, \d+ compiled; \d+ kernels"
    assert re.search(calls, out, re.M), out
    # (with torch installed, the same training in PyTorch eager is timed beside it)
    twins = len(re.findall(r"^trained in [\d.]+ s \(PyTorch eager: [\d.]+ s", out, re.M))
    assert twins == (2 if importlib.util.find_spec("torch") else 0), out
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    last = out.strip().splitlines()[-1]
    m = re.fullmatch(r"test accuracy: ([\d.]+)%", last)
    assert m, out
    # 10 classes: chance is 10%; two epochs of Adam already reach far beyond it
    assert float(m.group(1)) > 60, out


def test_demo_eager_backend_and_one_model():
    out = run_cli("demo", "--model", "mlp", "--epochs", "1", "--backend", "eager")
    assert "CNN" not in out and "compiled (" not in out
    assert re.search(r"^time per step: eager \d+ µs", out, re.M), out
    assert re.search(r"^test accuracy: [\d.]+%$", out.strip().splitlines()[-1])


@pytest.mark.parametrize("flag", [["--model", "resnet"], ["--backend", "cuda9"]])
def test_demo_rejects_unknown_model_and_backend(flag):
    proc = subprocess.run(
        [sys.executable, "-m", "jitgrad", "demo", *flag],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


@pytest.fixture(scope="module")
def bench_w3() -> str:
    # One run shared by the table tests: the timing table only, no compile-time subprocesses.
    return run_cli("bench", "--repeat", "1", "--only", "W3", "--no-compile-times")


def table_rows(out: str) -> tuple[list[str], list[list[str]]]:
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("workload"))
    rows = [re.split(r"\s{2,}", line) for line in lines if re.match(r"W\d", line)]
    return re.split(r"\s{2,}", header), rows


def test_bench_prints_table(bench_w3):
    header, rows = table_rows(bench_w3)
    assert "jitgrad eager (us)" in header
    assert "torch eager (us)" in header
    assert len(rows) == 1 and rows[0][0].startswith("W3 ")
    # the jitgrad column holds a positive time
    assert float(rows[0][1].replace(",", "")) > 0


def test_bench_times_compiled_step_on_interpreter_and_prints_ratios(bench_w3):
    header, rows = table_rows(bench_w3)
    row = dict(zip(header, rows[0]))
    # the reference interpreter is always timed; the numba column is there, n/a if unregistered
    assert float(row["jitgrad interpreter (us)"].replace(",", "")) > 0
    if "numba" not in bench.available_backends():
        assert row["jitgrad numba (us)"] == "n/a"
    ratio = row["torch/jitgrad eager"]
    if importlib.util.find_spec("torch") is None:
        assert ratio == "n/a"
    else:
        torch_us = float(row["torch eager (us)"].replace(",", ""))
        eager = float(row["jitgrad eager (us)"].replace(",", ""))
        assert float(ratio) == pytest.approx(torch_us / eager, rel=0.02, abs=0.01)
    assert "Compile times" not in bench_w3


def test_format_table_explicit_ratios_and_failed_cells():
    engines = [bench.Engine(name, lambda: jitgrad) for name in ("a x", "b y", "c z")]
    rows = [[100.0, 50.0, float("nan")]]
    text = bench.format_table(
        bench.WORKLOADS[:1], engines, rows, ratios=[("a x", "b y"), ("a x", "c z")]
    )
    header, *_, last = text.splitlines()
    assert header.split("  ")[-1].strip() == "a/c z" and "a/b y" in header
    # a failed engine shows "error" and its ratio n/a; 100 / 50 = 2
    assert last.split()[-3:] == ["error", "2.00", "n/a"]


def test_jax_engine_skips_cleanly_when_absent():
    if bench._load_jax() is not None:
        pytest.skip("jax is installed")
    engine = next(e for e in bench.build_engines(["interpreter"])[0] if e.name == "jax jit")
    assert bench.make_runner(bench.WORKLOADS[0], engine) is None


def test_jax_twins_compute_their_workloads():
    # The "jax jit" column is only a fair comparison if each twin does the workload's math:
    # checked against NumPy in float64 where jax is installed.
    jax = bench._load_jax()
    if jax is None:
        pytest.skip("jax is not installed")
    from jitgrad import bench_jax

    rng = np.random.default_rng(0)  # the draws mlp_step makes, in its order
    params = []
    for fan_in, fan_out in zip(bench.MLP_SIZES[:-1], bench.MLP_SIZES[1:]):
        bound = 1.0 / np.sqrt(fan_in)
        w = rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32)
        params.append((w, rng.uniform(-bound, bound, (fan_out,)).astype(np.float32)))
    x = rng.standard_normal((bench.MLP_BATCH, bench.MLP_SIZES[0]), dtype=np.float32)
    y = rng.integers(0, bench.MLP_SIZES[-1], bench.MLP_BATCH, dtype=np.int32)
    (w1, b1), (w2, b2) = ((w.astype(np.float64), b.astype(np.float64)) for w, b in params)
    z = np.maximum(x @ w1 + b1, 0.0) @ w2 + b2
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    run, _ = bench_jax.mlp_step(jax, bench.MLP_SIZES, bench.MLP_BATCH, bench.MLP_LR)
    first = float(run())
    assert first == pytest.approx(-logp[np.arange(len(y)), y].mean(), rel=1e-5)
    assert float(run()) < first  # the step trains

    x = np.random.default_rng(0).standard_normal(1000, dtype=np.float32).astype(np.float64)
    value, grad = bench_jax.elementwise_chain(jax, 1000)[0]()
    t, s = np.tanh(1.5 * x + 0.5), 1.0 / (1.0 + np.exp(-x))
    assert float(value) == pytest.approx(np.sum(t * s + np.exp(-x * x)), rel=1e-5)
    expected = 1.5 * (1 - t * t) * s + t * s * (1 - s) - 2 * x * np.exp(-x * x)
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-4, atol=1e-6)


def test_unregistered_backend_is_a_column_of_na(monkeypatch):
    from jitgrad import backends

    monkeypatch.delitem(backends.BACKENDS, "numba", raising=False)
    engines, ratios = bench.build_engines(["numba"])
    names = [e.name for e in engines]
    assert names[:3] == ["jitgrad eager", "jitgrad numba", "jitgrad interpreter"]
    assert ("torch eager", "jitgrad numba") in ratios
    assert bench.make_runner(bench.WORKLOADS[0], engines[1]) is None


def test_compile_time_child_reports_a_first_compiled_call_and_a_retrace(capsys):
    # In process, on the interpreter: the measuring body without the subprocess.
    from jitgrad import bench_compile

    bench_compile.child("warm", "interpreter")
    line = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(line.split(": ", 1)[1])
    warm, new_batch = result["warm"], result["new_batch"]
    # W1 traces (once, or twice if .grad None on the first call matters), then runs compiled
    assert warm["compiled"] and 1 <= warm["traces"] <= 2 and warm["eager_calls"] == 0
    assert 0 < warm["first_call"] <= warm["seconds"]
    # a new batch size is one retrace
    assert new_batch["compiled"] and new_batch["traces"] == warm["traces"] + 1
    text = bench_compile.format_table({"interpreter": result})
    assert "new batch 32" in text and "same caches" in text


def test_demo_child_reports_each_models_training_against_torch(capsys):
    # In process, one epoch on the interpreter: the measuring body without the subprocess.
    from jitgrad import bench_compile

    bench_compile.demo_child(1, "--backend", "interpreter")
    line = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(line.split(": ", 1)[1])
    assert set(result) == {"mlp", "cnn"}
    for r in result.values():
        assert r["seconds"] > 0 and 0 < r["accuracy"] <= 1
        # every batch of the epoch ran on some path
        assert r["traced_calls"] + r["eager_calls"] + r["compiled_calls"] == 22
        if r["torch_seconds"] is not None:  # (PyTorch's twin trained the same steps)
            assert r["torch_seconds"] > 0
    text = bench_compile.format_demo_table({1: result})
    assert "CNN" in text and "<= 1.5x" in text


def test_cold_compile_seconds_runs_in_a_fresh_process():
    from jitgrad import bench_compile

    assert bench_compile.cold_seconds("interpreter") > 0


def test_bench_rejects_unknown_workload():
    proc = subprocess.run(
        [sys.executable, "-m", "jitgrad", "bench", "--only", "W99"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr


def test_format_table_marks_missing_engine():
    def absent():
        return None

    engines = [
        bench.Engine("jitgrad eager", lambda: jitgrad),
        bench.Engine("other eager", absent, baseline=True),
    ]
    workloads = [bench.WORKLOADS[2]]
    rows = bench.run_table(workloads, engines, repeat=1)
    assert rows[0][0] is not None and rows[0][0] > 0 and rows[0][1] is None
    text = bench.format_table(workloads, engines, rows)
    assert "other/jitgrad eager" in text.splitlines()[0]
    assert text.splitlines()[-1].split()[-2:] == ["n/a", "n/a"]


def test_time_call_measures_one_call():
    calls = []
    per_call = bench.time_call(lambda: calls.append(None), repeat=2)
    assert 0 < per_call < 1e-3
    assert len(calls) > 10  # autorange ran many calls per measurement


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(?:bash|sh|console)?\n(.*?)```", section, re.S)
    return [line.strip() for b in blocks for line in b.splitlines() if line.strip()]


def test_readme_quick_start_has_two_commands():
    commands = quick_start_commands()
    assert len(commands) == 2, commands
    assert "python -m jitgrad demo" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim():
    ci = ROOT / ".ci" / "run"
    if not ci.exists():
        pytest.skip("no .ci/run in this checkout")
    lines = [line.strip() for line in ci.read_text().splitlines()]
    assert quick_start_commands()[1] in lines


def test_ci_installs_torch_so_the_agreement_tests_run():
    # tests/test_torch_agreement.py skips itself without torch: CI installs it before the tests
    ci = ROOT / ".ci" / "run"
    if not ci.exists():
        pytest.skip("no .ci/run in this checkout")
    lines = [line.strip() for line in ci.read_text().splitlines()]
    installs = [i for i, line in enumerate(lines) if re.match(r'pip install "?torch==', line)]
    assert installs and installs[0] < lines.index(quick_start_commands()[1])


def test_readme_python_examples_run(capsys):
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    # x.grad = 6x at x = 1, 2, 3 (whatever the print precision)
    assert re.search(r"6\.?0*,\s+12\.?0*,\s+18\.?0*\]", capsys.readouterr().out)


def test_run_table_measures_the_engines_of_a_workload_in_turns(monkeypatch):
    # each repeat round times every engine once: drift on a busy machine reaches all columns
    log = []
    # and each timed round starts after an idle gap (other engines' worker threads go quiet)
    monkeypatch.setattr(bench.time, "sleep", lambda s: log.append(("sleep", s)))

    def logging_engine(name):
        def prepare(fn, args):
            return lambda: log.append(name)

        return bench.Engine(name, lambda: jitgrad, prepare)

    engines = [logging_engine("a"), logging_engine("b")]
    rows = bench.run_table([bench.WORKLOADS[2]], engines, repeat=3)
    assert all(t > 0 for t in rows[0])
    runs = [name for i, name in enumerate(log) if i == 0 or log[i - 1] != name]  # one per block
    # a: warm-up and calibration, b: the same, then the two remaining rounds, each engine once
    # per round in an order of the round's own, each after an idle gap of 0.75-1.25 QUIET_S
    assert runs[:2] == ["a", "b"] and bench.QUIET_S > 0
    rounds = runs[2:]
    gaps, timed = rounds[0::2], rounds[1::2]
    assert sorted(timed[:2]) == sorted(timed[2:]) == ["a", "b"] and len(rounds) == 8
    assert all(
        g[0] == "sleep" and 0.75 * bench.QUIET_S <= g[1] <= 1.25 * bench.QUIET_S for g in gaps
    )


def test_demo_gpt_trains_and_samples():
    # eager here (the compiled GPT step is tested in test_compile_idioms): 60 steps learn the
    # characters' frequencies, well below the loss of a uniform guess over the vocabulary
    out = run_cli("demo", "--model", "gpt", "--gpt-steps", "60", "--backend", "eager", timeout=300)
    before = float(re.search(r"^validation loss before training: ([\d.]+)", out, re.M).group(1))
    after = float(re.search(r"validation loss ([\d.]+)$", out, re.M).group(1))
    vocab = int(re.search(r"vocabulary (\d+)", out).group(1))
    assert abs(before - np.log(vocab)) < 0.2 and after < before - 1.0, out
    assert re.search(r"^sample: 'def ", out, re.M), out
    assert re.search(r"^time per step: eager \d+ µs", out, re.M), out
