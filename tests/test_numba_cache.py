"""The numba-cpu loader: generated source written to hashed files and imported from there."""

from __future__ import annotations

import builtins
import errno
import hashlib
import json
import os
import stat
import subprocess
import sys
import tempfile
import textwrap
import warnings

import pytest

from jitgrad.backends.numba_cpu import cache

SOURCE = textwrap.dedent(
    """\
    from numba import njit


    @njit(cache=_JG_CACHE)
    def f(x):
        return x + 1
    """
)


def expected_name(source: str, prefix: str) -> str:
    return f"{prefix}_{hashlib.sha256(source.encode()).hexdigest()[:20]}"


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def cache_path(tmp_path, monkeypatch):
    """A fresh cache directory (not created yet) and no modules remembered from other tests."""
    directory = tmp_path / "jg" / "cache"
    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(directory))
    monkeypatch.setattr(cache, "_warned", False)
    cache.clear_cache()
    yield directory
    cache.clear_cache()


def test_cache_dir_location(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(tmp_path / "x"))
    assert cache.cache_dir() == tmp_path / "x"
    monkeypatch.delenv(cache.CACHE_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    want = tmp_path / "xdg" / "jitgrad" / f"numba-v{cache.FORMAT_VERSION}"
    assert cache.cache_dir() == want
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    want = tmp_path / "home" / ".cache" / "jitgrad" / f"numba-v{cache.FORMAT_VERSION}"
    assert cache.cache_dir() == want
    assert not want.exists()  # resolving the path creates nothing


def test_load_writes_hashed_file_and_memoises(cache_path, monkeypatch):
    old_umask = os.umask(0)  # modes must not depend on a permissive umask
    try:
        module = cache.load_module(SOURCE, "kern")
    finally:
        os.umask(old_umask)
    name = expected_name(SOURCE, "kern")
    path = cache_path / f"{name}.py"
    assert path.read_text() == SOURCE
    assert mode(path) == 0o600
    assert mode(cache_path) == 0o700
    assert mode(cache_path.parent) == 0o700  # missing parents are created private too
    assert module.__name__ == f"jitgrad_generated.{name}"
    assert sys.modules[module.__name__] is module
    assert module.__file__ == str(path)
    assert module._JG_CACHE is True
    assert module.f(41) == 42
    assert [p.name for p in cache_path.iterdir() if p.suffix in (".py", ".tmp")] == [path.name]

    def no_disk(*args, **kwargs):
        raise AssertionError("a memoised load touched the disk")

    with monkeypatch.context() as patch:
        for owner, attr in [(builtins, "open"), (os, "replace"), (os, "stat"), (os, "mkdir")]:
            patch.setattr(owner, attr, no_disk)
        patch.setattr(tempfile, "mkstemp", no_disk)
        assert cache.load_module(SOURCE, "kern") is module


def test_modes_do_not_depend_on_umask(cache_path):
    source = "CACHED = _JG_CACHE\n"  # no Numba: its own files would follow the odd umask
    old_umask = os.umask(0o277)  # would leave 0o500 directories and 0o400 files
    try:
        module = cache.load_module(source, "plain")
    finally:
        os.umask(old_umask)
    assert module.CACHED is True
    assert mode(cache_path / f"{expected_name(source, 'plain')}.py") == 0o600
    assert mode(cache_path) == mode(cache_path.parent) == 0o700


def test_existing_matching_file_is_reused_as_is(cache_path):
    cache_path.mkdir(parents=True, mode=0o755)
    os.chmod(cache_path, 0o755)
    path = cache_path / f"{expected_name(SOURCE, 'kern')}.py"
    path.write_text(SOURCE)
    os.utime(path, (1_000_000_000, 1_000_000_000))
    module = cache.load_module(SOURCE, "kern")
    assert module.f(1) == 2
    assert os.stat(path).st_mtime == 1_000_000_000  # not rewritten
    assert mode(cache_path) == 0o755  # an existing directory keeps its permissions


@pytest.mark.parametrize("same_size", [False, True])
def test_corrupted_file_is_never_executed(cache_path, monkeypatch, same_size):
    monkeypatch.delattr(builtins, "JG_TAMPERED", raising=False)  # undone after the test
    name = expected_name(SOURCE, "kern")
    bad = "import builtins\nbuiltins.JG_TAMPERED = True\n"
    if same_size:  # as a tampered file might be, to fool stamp-based caches
        bad = bad + "#" * (len(SOURCE) - len(bad) - 1) + "\n"
        assert len(bad) == len(SOURCE)
    cache_path.mkdir(parents=True)
    path = cache_path / f"{name}.py"
    path.write_text(bad)
    os.chmod(path, 0o644)
    # Stale compiled code for the corrupted file must go too.
    pycache = cache_path / "__pycache__"
    pycache.mkdir()
    stale = [pycache / f"{name}.f-5.py311.nbi", pycache / f"{name}.cpython-311.pyc"]
    for p in stale:
        p.write_bytes(b"stale")
    unrelated = pycache / "other.f-5.py311.nbi"
    unrelated.write_bytes(b"keep")

    module = cache.load_module(SOURCE, "kern")
    assert not hasattr(builtins, "JG_TAMPERED")
    assert path.read_text() == SOURCE
    assert mode(path) == 0o600
    assert module.f(2) == 3
    assert not any(p.exists() for p in stale)
    assert unrelated.exists()


def _assert_one_no_cache_warning(records):
    msgs = [str(w.message) for w in records if issubclass(w.category, RuntimeWarning)]
    assert len(msgs) == 1, msgs
    assert cache.CACHE_DIR_ENV in msgs[0]
    assert "persist" in msgs[0]


def _check_in_memory(module):
    assert module._JG_CACHE is False
    assert module.f(41) == 42
    assert module.__name__.startswith("jitgrad_generated.kern_")


def test_read_only_cache_dir_falls_back_to_memory(cache_path, monkeypatch):
    cache_path.mkdir(parents=True)
    os.chmod(cache_path, 0o500)
    try:
        try:  # root ignores directory permissions: simulate a read-only file system instead
            (cache_path / "probe").touch()
        except PermissionError:
            pass
        else:
            (cache_path / "probe").unlink()

            def read_only(*args, **kwargs):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(cache_path))

            monkeypatch.setattr(tempfile, "mkstemp", read_only)
        with warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            module = cache.load_module(SOURCE, "kern")
            _check_in_memory(module)
            other = cache.load_module(SOURCE.replace("x + 1", "x + 2"), "kern")
            assert other.f(1) == 3
        _assert_one_no_cache_warning(records)  # once per process, not per module
        assert list(cache_path.iterdir()) == []
    finally:
        os.chmod(cache_path, 0o700)


def test_uncreatable_cache_dir_falls_back_to_memory(tmp_path, monkeypatch, cache_path):
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(tmp_path / "a_file" / "cache"))
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        _check_in_memory(cache.load_module(SOURCE, "kern"))
    _assert_one_no_cache_warning(records)


def test_numba_without_cache_locator_falls_back_to_memory(cache_path):
    # What Numba raises at decoration time when it finds nowhere to write its cache.
    source = SOURCE + textwrap.dedent(
        """
        if _JG_CACHE:
            raise RuntimeError("cannot cache function 'f': no locator available for file 'x'")
        """
    )
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        _check_in_memory(cache.load_module(source, "kern"))
    _assert_one_no_cache_warning(records)


def test_errors_in_generated_code_propagate(cache_path):
    with pytest.raises(ZeroDivisionError):
        cache.load_module("x = 1 / 0\n", "kern")
    assert not any(k.startswith("jitgrad_generated.kern_") for k in sys.modules)
    with pytest.raises(ValueError, match="identifier"):
        cache.load_module(SOURCE, "not-an-identifier")


def test_clear_cache_removes_only_generated_files(cache_path):
    module = cache.load_module(SOURCE, "kern")
    assert module.f(1) == 2  # compiles and writes Numba's cache next to the file
    name = expected_name(SOURCE, "kern")
    pycache = cache_path / "__pycache__"
    assert any(p.name.startswith(name + ".") for p in pycache.iterdir())
    keep = [cache_path / "notes.txt", cache_path / "helper.py", pycache / "helper.f-1.py311.nbi"]
    for p in keep:
        p.write_text("keep")
    leftover = cache_path / f".{name}.py.abc123.tmp"
    leftover.write_text("torn")

    cache.clear_cache()
    assert all(p.exists() for p in keep)
    assert not (cache_path / f"{name}.py").exists()
    assert not leftover.exists()
    assert [p.name for p in pycache.iterdir()] == ["helper.f-1.py311.nbi"]
    assert f"jitgrad_generated.{name}" not in sys.modules
    again = cache.load_module(SOURCE, "kern")  # the memo was cleared too: loads afresh
    assert again is not module
    assert (cache_path / f"{name}.py").read_text() == SOURCE


_SCRIPT = textwrap.dedent(
    """\
    import json, sys
    from jitgrad.backends.numba_cpu.cache import load_module
    module = load_module(sys.argv[1], "persist")
    assert module.f(41) == 42
    stats = module.f.stats
    print(json.dumps([sum(stats.cache_hits.values()), sum(stats.cache_misses.values())]))
    """
)


def test_numba_disk_cache_persists_across_processes(tmp_path):
    env = dict(os.environ, **{cache.CACHE_DIR_ENV: str(tmp_path)})
    env.pop("NUMBA_CACHE_DIR", None)  # Numba must cache next to the generated file
    env.pop("NUMBA_DISABLE_JIT", None)
    runs = []
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, "-c", _SCRIPT, SOURCE],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    # [cache hits, cache misses]: the first process compiles, the second loads from disk.
    assert runs == [[0, 1], [1, 0]]
    assert (tmp_path / f"{expected_name(SOURCE, 'persist')}.py").read_text() == SOURCE
