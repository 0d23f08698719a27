"""Fixtures of the eddy Python tests: real Eddy binaries, a small real training job.

Binaries come from $EDDY_BIN_DIR (default: build/bin of this checkout); the tests
that need them are skipped, saying so, when they are missing. Nothing waits with
sleep: processes are followed through their output lines and files, with timeouts.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

PYTHON_DIR = Path(__file__).resolve().parent.parent
REPO = PYTHON_DIR.parent
sys.path.insert(0, str(PYTHON_DIR))

BIN_DIR = Path(os.environ.get("EDDY_BIN_DIR", REPO / "build" / "bin"))
BINARIES = ("eddy_gen", "eddy_train", "eddy_serve", "eddy_models")


def binary(name: str) -> str:
    return str(BIN_DIR / name)


@pytest.fixture(scope="session")
def bin_dir() -> Path:
    missing = [b for b in BINARIES if not (BIN_DIR / b).is_file()]
    if missing:
        pytest.skip(f"Eddy binaries {', '.join(missing)} not found in {BIN_DIR}: build them "
                    "(cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release && cmake --build "
                    "build) or set EDDY_BIN_DIR")
    return BIN_DIR


def run(args: list[str], timeout: float = 120, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """Runs a command to completion; fails the test with its output if it fails."""
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited with {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


class Process:
    """A background process whose merged stdout+stderr lines can be waited for."""

    def __init__(self, args: list[str], **kw):
        self.args = args
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, **kw)
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match:
        """The first (new) output line matching `pattern`, waiting up to `timeout` s."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._queue.get(timeout=max(left, 0.001))
            except queue.Empty:
                line = ""
                if left <= 0:
                    pytest.fail(f"no line matching {pattern!r} within {timeout} s from "
                                f"{self.args[0]}:\n" + "\n".join(self.lines[-40:]))
            if line is None:
                pytest.fail(f"{self.args[0]} ended before printing {pattern!r}:\n"
                            + "\n".join(self.lines[-40:]))
            if line:
                self.lines.append(line)
                m = regex.search(line)
                if m:
                    return m

    def output(self) -> str:
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return "\n".join(self.lines)

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture
def process():
    """Starts background processes (Process); stops them at the end of the test."""
    started: list[Process] = []

    def start(args: list[str], **kw) -> Process:
        p = Process(args, **kw)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


@pytest.fixture(scope="session")
def data_file(bin_dir, tmp_path_factory) -> Path:
    """20,000 generated Criteo-format rows."""
    path = tmp_path_factory.mktemp("data") / "rows.tsv"
    run([binary("eddy_gen"), "--rows=20000", "--seed=5", "--max_vocab=500", "--signal=2",
         "--drift_every=0", f"--out={path}"])
    return path


# A small FM; versions every 20 ms: fulls, deltas with rows and tombstones (eviction).
TRAIN_FLAGS = ["--local", "--model=fm", "--emb_dim=4", "--batch_size=128", "--num_servers=2",
               "--full_every=3", "--evict_after_versions=1", "--keep_versions=100",
               "--progress_interval_ms=20"]


@pytest.fixture(scope="session")
def trained(bin_dir, data_file, tmp_path_factory) -> dict:
    """A finished job's model root (training versions with optimizer state) and metrics."""
    d = tmp_path_factory.mktemp("job")
    models, metrics = d / "models", d / "metrics.jsonl"
    p = run([binary("eddy_train"), *TRAIN_FLAGS, "--num_workers=2", f"--data={data_file}",
             f"--model_dir={models}", "--snapshot_every=20ms", f"--metrics_out={metrics}"])
    return {"dir": d, "models": models, "metrics": metrics, "output": p.stdout + p.stderr}
