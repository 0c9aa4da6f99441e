"""Real-model tier: converting the PyPI GGUF into the cache - hash check, atomicity, recovery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from extractkit import ModelLoadError
from extractkit import _model

pytestmark = pytest.mark.real_model

_CONVERT = "import sys; from pathlib import Path; from extractkit._model import ensure_base_checkpoint; " \
           "ensure_base_checkpoint(Path(sys.argv[1]))"


def test_a_wrong_gguf_hash_is_refused_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(_model, "GGUF_SHA256", "0" * 64)
    with pytest.raises(ModelLoadError, match="sha256"):
        _model.ensure_base_checkpoint(tmp_path)
    models = tmp_path / "models"
    assert [p.name for p in models.iterdir()] == []  # no checkpoint, no temporary folder


def test_an_interrupted_conversion_leaves_no_cache_and_the_next_run_redoes_it(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", _CONVERT, str(tmp_path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    models = tmp_path / "models"
    deadline = time.time() + 120
    while time.time() < deadline and not list(models.glob(".tmp-*/*.gguf")):
        time.sleep(0.2)
    time.sleep(3)  # well inside the dequantization step
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    target = _model.base_checkpoint_dir(tmp_path)
    assert not target.exists(), "a killed conversion must not leave a checkpoint"
    assert list(models.glob(".tmp-*")), "the half-written work stays in a temporary folder"

    assert _model.ensure_base_checkpoint(tmp_path) == target
    assert (target / "model.safetensors").exists() and (target / _model._DONE_MARK).exists()
    assert not list(models.glob(".tmp-*")), "the stale temporary folder is cleaned up"

    start = time.perf_counter()
    loaded = _model.load_model(target)  # later processes load the cache, not the GGUF
    assert loaded.model.config.vocab_size == 262144
    assert time.perf_counter() - start < 60
