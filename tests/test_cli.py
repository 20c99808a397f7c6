"""The command line (``python -m jitgrad demo|bench``) and the docs/CI plumbing around it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import jitgrad
from jitgrad import bench

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "jitgrad", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_demo_loss_decreases_and_reports_accuracy():
    out = run_cli("demo", "--epochs", "2")
    losses = [float(v) for v in re.findall(r"^epoch\s+\d+\s+loss (\S+)$", out, re.M)]
    # epoch 0 (before training), 1, 2
    assert len(losses) == 3, out
    assert losses[-1] < losses[0], out
    m = re.search(r"^final accuracy: ([\d.]+)% \((\d+)/(\d+)\)$", out, re.M)
    assert m, out
    correct, total = int(m.group(2)), int(m.group(3))
    assert 0 <= correct <= total
    # 3 spiral arms: chance is 1/3; two epochs of SGD already do clearly better (~60%).
    assert correct / total > 0.45, out


def test_bench_prints_table():
    out = run_cli("bench", "--repeat", "1", "--only", "W3")
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("workload"))
    assert "jitgrad eager (us)" in header
    assert "torch eager (us)" in header
    rows = [line for line in lines if line.startswith("W")]
    assert len(rows) == 1 and rows[0].startswith("W3 ")
    # the jitgrad column holds a positive time
    cells = re.split(r"\s{2,}", rows[0])
    assert float(cells[1].replace(",", "")) > 0


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


def test_readme_python_examples_run(capsys):
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    # x.grad = 6x at x = 1, 2, 3 (whatever the print precision)
    assert re.search(r"6\.?0*,\s+12\.?0*,\s+18\.?0*\]", capsys.readouterr().out)
