"""Session-wide fixtures shared by every test package.

`mini_clevr_dir`: a tiny mini-CLEVR data set generated once per test session (about a second),
in the real CLEVR v1.0 layout, for the data, training and notebook tests. Treat it as read-only:
copy it first if a test needs to change files.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def pytest_configure(config) -> None:
    # Ctrl-C as an interactive shell delivers it, for the tests that send SIGINT to themselves or
    # to a training they start: a shell's `nohup ... &` or `cmd &` starts pytest with SIGINT
    # ignored, which Python keeps and every child process inherits.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# The smoke set's shape, for tests that count things in it.
MINI_CLEVR = dict(
    train_scenes=12,
    val_scenes=6,
    test_scenes=3,
    questions_per_scene=4,
    render_size=(48, 32),  # (W, H) of the PNGs
    min_objects=3,
    max_objects=6,
    seed=0,
    framing="close",
    humans=True,
)


@pytest.fixture(scope="session")
def mini_clevr_settings() -> dict:
    """The `generate_dataset` arguments `mini_clevr_dir` was made with (a copy)."""
    return dict(MINI_CLEVR)


@pytest.fixture(scope="session")
def mini_clevr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OUT_DIR of `qgmrn.synth.generate_dataset(**MINI_CLEVR)` (images, scenes, questions,
    CLEVR-Humans); 12/6/3 scenes with 4 questions each, 48x32 RGBA PNGs, framing "close"."""
    from qgmrn.synth.generate import generate_dataset

    out = tmp_path_factory.mktemp("mini-clevr")
    generate_dataset(out, workers=1, progress=False, **MINI_CLEVR)
    return out


@pytest.fixture
def scratch(tmp_path) -> Iterator[Path]:
    """A folder for the files under test: in RAM (/dev/shm) where there is one, since these
    tests write and read back thousands of small files; tmp_path otherwise."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        with tempfile.TemporaryDirectory(dir=shm, prefix="qgmrn-fuzz-") as folder:
            yield Path(folder)
    else:
        yield tmp_path


@pytest.fixture
def load_benchmark(monkeypatch) -> Callable:
    """`load_benchmark("bench_sparse")`: the script benchmarks/bench_sparse.py imported as a
    module, with benchmarks/ on sys.path as when it runs (the scripts import `machine` and each
    other); both undone after the test."""

    def load(name: str):
        monkeypatch.syspath_prepend(str(BENCHMARKS))
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up
        spec.loader.exec_module(module)
        return module

    return load
