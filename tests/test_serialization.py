"""jitgrad.save / jitgrad.load: the documented .npz + JSON format, round trips, errors, and
resuming training (model + Adam + scheduler) bit for bit from a checkpoint."""

from __future__ import annotations

import io
import json
import math
import pickle
from collections import OrderedDict

import numpy as np
import pytest
from test_compile import _make_step

import jitgrad as jg
import jitgrad.nn as nn
import jitgrad.optim as optim
from jitgrad.optim.lr_scheduler import StepLR


def _roundtrip(obj):
    buf = io.BytesIO()
    jg.save(obj, buf)
    buf.seek(0)
    return jg.load(buf)


def test_nested_structures_round_trip_with_exact_types():
    rng = np.random.default_rng(0)
    arrays = {
        "f32": rng.standard_normal((2, 3)).astype(np.float32),
        "f64": rng.standard_normal(4),
        "i32": np.arange(6, dtype=np.int32).reshape(3, 2),
        "i64": np.array(7, dtype=np.int64),
        "u64": np.array([2**64 - 1, 5], dtype=np.uint64),
        "bool": np.array([True, False]),
        "empty": np.zeros((0, 3), np.float32),
    }
    w = nn.Parameter(jg.randn(3))
    obj = {
        "tensors": {k: jg.from_numpy(a.copy()) for k, a in arrays.items()},
        "param": w,
        "numbers": [1, -(2**70), 2.5, 0.1, math.inf, -math.inf, True, False, None],
        "text": "é ∑ ok",
        "tuple": (1, (2.0, "x"), []),
        "int_keys": {0: "a", 3: "b", -1: None},
        "ordered": OrderedDict([("z", 1), ("a", 2)]),
        "dtype": jg.float64,
        "ndarray": np.arange(3.0),
        "np_scalar": np.float32(1.5),
    }
    out = _roundtrip(obj)
    for k, a in arrays.items():
        t = out["tensors"][k]
        assert isinstance(t, jg.Tensor) and not t.requires_grad
        assert t.dtype == jg.as_tensor(a).dtype and t.shape == a.shape, k
        np.testing.assert_array_equal(t.numpy(), a)
    assert type(out["param"]) is jg.Tensor and not out["param"].requires_grad
    np.testing.assert_array_equal(out["param"].numpy(), w.detach().numpy())
    nums = out["numbers"]
    assert nums == obj["numbers"] and [type(v) for v in nums] == [type(v) for v in obj["numbers"]]
    assert out["text"] == obj["text"] and out["tuple"] == (1, (2.0, "x"), [])
    assert out["int_keys"] == {0: "a", 3: "b", -1: None}
    assert type(out["ordered"]) is OrderedDict and list(out["ordered"]) == ["z", "a"]
    assert out["dtype"] is jg.float64
    assert isinstance(out["ndarray"], np.ndarray) and out["ndarray"].tolist() == [0.0, 1.0, 2.0]
    assert out["np_scalar"] == 1.5
    assert math.isnan(_roundtrip([math.nan])[0])
    loaded = out["tensors"]["f32"]
    loaded.add_(1.0)  # loaded tensors own writable memory


def test_shared_tensors_stay_shared():
    t = jg.randn(3)
    out = _roundtrip({"a": t, "b": [t], "c": jg.randn(3)})
    assert out["a"] is out["b"][0] and out["a"] is not out["c"]


def test_format_is_plain_npz_with_a_json_structure(tmp_path):
    path = tmp_path / "model.ckpt"  # written exactly here: no ".npz" appended
    state = {"w": jg.tensor([[1.0, 2.0]]), "step": 3}
    jg.save(state, path)
    assert path.exists() and not (tmp_path / "model.ckpt.npz").exists()
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["structure", "tensor_0"]
        doc = json.loads(npz["structure"].tobytes().decode("utf-8"))
        np.testing.assert_array_equal(npz["tensor_0"], [[1.0, 2.0]])
        assert npz["tensor_0"].dtype == np.float32
    assert doc["format"] == "jitgrad.save" and doc["version"] == 1
    assert doc["root"] == {
        "type": "dict",
        "items": [
            ["w", {"type": "tensor", "key": "tensor_0", "dtype": "float32", "shape": [1, 2]}],
            ["step", 3],
        ],
    }
    assert jg.load(str(path))["step"] == 3  # str paths too
    with open(path, "rb") as f:
        np.testing.assert_array_equal(jg.load(f)["w"].numpy(), [[1.0, 2.0]])


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(TypeError, match=r"type Linear; save its state_dict\(\) instead"):
        jg.save(nn.Linear(2, 2), io.BytesIO())
    loop = []
    loop.append(loop)
    with pytest.raises(ValueError, match="contains itself"):
        jg.save(loop, io.BytesIO())
    with pytest.raises(TypeError, match="cannot store an object of type set"):
        jg.save({1, 2}, io.BytesIO())

    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(2))
    with pytest.raises(RuntimeError, match="not written by jitgrad.save"):
        jg.load(other)
    pickled = tmp_path / "pickled.pt"
    pickled.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(RuntimeError, match="not a jitgrad checkpoint"):
        jg.load(pickled)

    buf = io.BytesIO()
    doc = json.dumps({"format": "jitgrad.save", "version": 99, "root": None}).encode()
    np.savez(buf, structure=np.frombuffer(doc, np.uint8))
    buf.seek(0)
    with pytest.raises(RuntimeError, match="version 99 is not supported"):
        jg.load(buf)


def test_module_load_state_dict_reports_shapes_and_keys_and_changes_nothing():
    model = nn.Linear(4, 2)
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    bad = {"weight": jg.zeros(3, 4), "bias": jg.zeros(2), "extra": jg.zeros(1)}
    with pytest.raises(RuntimeError) as e:
        model.load_state_dict(_roundtrip(bad))
    msg = str(e.value)
    assert msg.startswith("Error(s) in loading state_dict for Linear:\n\t")
    assert 'Unexpected key(s) in state_dict: "extra". ' in msg
    assert (
        "size mismatch for weight: copying a param with shape jitgrad.Size([3, 4]) from "
        "checkpoint, the shape in current model is jitgrad.Size([2, 4])." in msg
    )
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "bias"\. '):
        model.load_state_dict({"weight": jg.ones(2, 4)})
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])  # nothing was copied


def test_optimizer_load_state_dict_checks_before_writing():
    p = nn.Parameter(jg.randn(3))
    opt = optim.Adam([p], lr=0.1)
    p.grad = jg.ones(3)
    opt.step()
    saved = _roundtrip(opt.state_dict())
    assert set(saved["state"]) == {0} and saved["param_groups"][0]["betas"] == (0.9, 0.999)
    q = nn.Parameter(jg.randn(4))
    other = optim.Adam([q], lr=0.5)
    q.grad = jg.ones(4)
    other.step()
    live = other.state[q]["exp_avg"]
    before = live.numpy().copy()
    with pytest.raises(ValueError, match=r"state 'exp_avg' of shape jitgrad.Size\(\[3\]\)"):
        other.load_state_dict(saved)
    assert other.param_groups[0]["lr"] == 0.5 and other.state[q]["exp_avg"] is live
    np.testing.assert_array_equal(live.numpy(), before)


def _data(i):
    rng = np.random.default_rng(100 + i)
    x = jg.tensor(rng.standard_normal((6, 5)).astype(np.float32))
    return x, jg.tensor(rng.integers(0, 3, 6))


def _training(seed):
    jg.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Dropout(0.2), nn.Linear(7, 3))
    opt = optim.Adam(model.parameters(), lr=0.02, amsgrad=True)
    sched = StepLR(opt, step_size=2, gamma=0.5)
    return model, opt, sched, _make_step(model, opt)


def _train(step, sched, start, n):
    losses = []
    for i in range(start, start + n):
        losses.append(step(*_data(i)).item())
        sched.step()
    return losses


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_checkpoint_resumes_training_bit_for_bit(tmp_path, compiled):
    model, opt, sched, step = _training(seed=0)
    _train(step, sched, 0, 5)
    path = tmp_path / "ckpt.jg"
    jg.save(
        {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "rng": jg.get_rng_state(),  # dropout draws continue from here
            "epoch": 5,
        },
        path,
    )
    want_losses = _train(step, sched, 5, 5)
    want = [p.detach().numpy().copy() for p in model.parameters()]
    want_lr = sched.get_last_lr()

    model2, opt2, sched2, step2 = _training(seed=1)  # different initial weights
    ckpt = jg.load(path)
    model2.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["optimizer"])
    sched2.load_state_dict(ckpt["scheduler"])
    jg.set_rng_state(ckpt["rng"])
    assert ckpt["epoch"] == 5 and opt2.param_groups[0]["lr"] == sched2.get_last_lr()[0]
    if compiled:
        step2 = jg.compile(step2, backend="interpreter")
    assert _train(step2, sched2, 5, 5) == want_losses
    for a, b in zip(want, model2.parameters()):
        np.testing.assert_array_equal(a, b.detach().numpy())
    assert sched2.get_last_lr() == want_lr
    for p, q in zip(model.parameters(), model2.parameters()):
        for k, v in opt.state[p].items():
            np.testing.assert_array_equal(v.numpy(), opt2.state[q][k].numpy())


def test_save_to_a_path_is_all_or_nothing(tmp_path, monkeypatch):
    # a process that dies while saving (one rank of a training job) leaves the old file whole
    path = tmp_path / "ckpt.npz"
    jg.save({"w": jg.ones(3)}, path)

    def broken(fh, **arrays):
        fh.write(b"PK half")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(KeyboardInterrupt):
        jg.save({"w": jg.zeros(3)}, path)
    monkeypatch.undo()
    assert jg.load(path)["w"].tolist() == [1.0, 1.0, 1.0]
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]
