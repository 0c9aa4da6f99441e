"""`extractkit.schemas` and `extractkit.finetune` map top-level folders, and the bundled adapter is
package data: check both install modes expose all three."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.install
ROOT = Path(__file__).resolve().parents[1]
PROBE = ("import extractkit.schemas as s, extractkit, extractkit.finetune as f, extractkit._model as m; "
         "print(s.__file__); print(extractkit.__file__); print(s.Invoice); print(f.__file__); "
         "print(sorted(p.name for p in m.BUNDLED_ADAPTER.iterdir()))")
ADAPTER_FILES = "['adapter_config.json', 'adapter_model.safetensors', 'manifest.json']"


def _pip(*args: str, python: Path | None = None) -> None:
    if python is None:
        cmd = [sys.executable, "-m", "pip", "install", "--no-build-isolation"]
    else:  # the build then runs in that bare interpreter, so it needs build isolation
        cmd = [sys.executable, "-m", "pip", "--python", str(python), "install"]
    subprocess.run([*cmd, "-q", "--no-deps", *args], check=True, cwd=ROOT, capture_output=True)


def test_regular_install_exposes_schemas(tmp_path):
    target = tmp_path / "site"
    _pip("--target", str(target), str(ROOT))
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True,
                         cwd=tmp_path)  # not the repo root, which would shadow the installed copy
    schemas_file, package_file, cls, finetune_file, adapter = out.stdout.splitlines()
    assert schemas_file.startswith(str(target)) and package_file.startswith(str(target))
    assert finetune_file.startswith(str(target)) and "Invoice" in cls
    assert adapter == ADAPTER_FILES


def test_editable_install_exposes_schemas(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    _pip("-e", str(ROOT), python=python)
    deps = sysconfig.get_paths()["purelib"]  # pydantic & co. from the test environment, searched last
    code = f"import sys; sys.path.append({deps!r}); {PROBE}"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    schemas_file, package_file, _, finetune_file, adapter = out.stdout.splitlines()
    assert Path(schemas_file) == ROOT / "schemas" / "__init__.py"
    assert Path(package_file) == ROOT / "extractkit" / "__init__.py"
    assert Path(finetune_file) == ROOT / "finetune" / "__init__.py"
    assert adapter == ADAPTER_FILES
