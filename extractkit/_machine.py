"""What this machine measured once, remembered across processes under the cache folder.

A first result used to pay for three things that depend only on the machine,
torch and the weights, in every new process: `numerics="auto"` timing the
layer kernels (~0.2 s), the head timing its screens (~0.9 s) and building the
int8 screen copy of the 262k-row head (~1.2 s) - half of a first result's
time on 2 cores. The first process to measure writes the answer down and later
ones read it:

- `choice(question, measure)`: a measured answer (a short string) for this
  machine's fingerprint (CPU model, vector units, logical CPUs, torch's thread
  count, torch's version). The first writer wins: the answer is linked into
  place, which fails if another process linked first, and every process then
  uses the file's answer. So processes that measure at the same moment (Ray
  workers starting together) still decode with the same numerics - one
  measuring under load no longer makes its outputs differ from its neighbour's.
- `tensors(key, build)`: tensors derived from weights (the head's screen
  copy; all qint8 layers' int8 rows as one file, ~0.5 s of quantizing, in a
  group that keeps the 4 most recently used weights, since every fine-tuned
  adapter is new weights) or from the tokenizer file (llguidance's token
  bytes, ~0.5 s of spelling), or from both and the machine (a schema prefix's
  keys and values, ~0.4 s of prefill; a group that keeps the 16 most recently
  used), saved as safetensors and memory-mapped back. `key` must name the
  weights exactly (the head uses its checkpoint file's path, inode, size and
  mtime), and the caller's `accept` checks what was saved against the weights
  it has; a refused file is rebuilt and replaced.

`EXTRACTKIT_REMEMBER=0` turns both off (measure and build in every process).
To measure again, delete the `machine/` folder of the cache (`EXTRACTKIT_CACHE_DIR`,
by default ~/.cache/extractkit); that also removes files versions before 2026-12-07 kept
without bound (72 files of qint8 rows per weights at its top level, ~110 MB a set).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")

_VERSION = "1"  # bump when a remembered format or what a question means changes


def enabled() -> bool:
    return os.environ.get("EXTRACTKIT_REMEMBER", "1") != "0"


def fingerprint() -> str:
    """What a timing depends on: the CPU, how many threads torch runs, and torch itself."""
    import torch

    from ._manifest import machine_description

    return f"{machine_description()}; torch {torch.__version__}, {torch.get_num_threads()} threads"


def file_identity(path: Path) -> str:
    """Which bytes a file holds, cheaply: its path, inode, size and modification time (a key part)."""
    info = path.stat()
    return f"{path.resolve()} inode {info.st_ino} size {info.st_size} mtime {info.st_mtime_ns}"


def _folder() -> Path:
    from ._model import cache_dir

    return cache_dir() / "machine"


def _name(*parts: str) -> str:
    return hashlib.sha256("\n".join((_VERSION, *parts)).encode()).hexdigest()[:24]


def choice(question: str, measure: Callable[[], str]) -> str:
    """The remembered answer to `question` on this machine, measuring it if nobody has."""
    if not enabled():
        return measure()
    where = fingerprint()
    path = _folder() / f"{_name(where, question)}.json"
    answer = _read_answer(path)
    if answer is not None:
        return answer
    answer = measure()
    try:
        _link_new(path, json.dumps({"machine": where, "question": question, "answer": answer}))
    except OSError:
        return answer  # a read-only cache: this process's own measurement
    return _read_answer(path) or answer  # whoever linked first


def _read_answer(path: Path) -> str | None:
    try:
        return str(json.loads(path.read_text())["answer"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _link_new(path: Path, text: str) -> None:
    """Put `text` at `path` whole, unless the file exists already (then leave it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.write_text(text)
    try:
        os.link(tmp, path)  # atomic, and fails where another process got there first
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def _tensor_path(key: str, group: str) -> Path:
    return _folder() / group / f"{_name(key)}.safetensors"


def saved(key: str, accept: Callable[[dict], bool], group: str = "") -> dict | None:
    """What `tensors(key, ...)` saved, if `accept` takes it; else None (nothing built)."""
    if not enabled():
        return None
    from safetensors.torch import load_file

    path = _tensor_path(key, group)
    if not path.exists():
        return None
    try:
        state = load_file(str(path))  # memory-mapped: pages come in as they are read
        if not accept(state):
            return None
        if group:
            os.utime(path)  # used now: the last a bounded group (`keep`) lets go
        return state
    except Exception:  # a damaged file: the caller builds again, and `tensors` replaces it
        return None


def _prune(folder: Path, keep: int) -> None:
    """Delete all but the `keep` most recently used files of a group (by modification time)."""
    files = []
    for path in folder.glob("*.safetensors"):
        try:
            files.append((path.stat().st_mtime_ns, path))
        except OSError:
            continue  # another process pruned it first
    for _, path in sorted(files, reverse=True)[keep:]:
        path.unlink(missing_ok=True)


def tensors(key: str, build: Callable[[], dict], accept: Callable[[dict], bool], group: str = "",
            keep: int = 0) -> dict:
    """`build()`'s tensors (a dict of name -> tensor), from the cache when `key` was built before
    and `accept` takes what was saved; otherwise built, and saved in place of what was there.

    `group` saves under a subfolder of its own; with `keep`, that group holds only its `keep`
    most recently used files (for keys without end, such as one per schema)."""
    found = saved(key, accept, group)
    if found is not None:
        return found
    built = build()
    if not enabled():
        return built
    from safetensors.torch import save_file

    path = _tensor_path(key, group)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}.safetensors")
        save_file({k: v.contiguous() for k, v in built.items()}, str(tmp))
        os.replace(tmp, path)  # the same key builds the same tensors: any whole file will do
        if group and keep:
            _prune(path.parent, keep)
    except OSError:
        pass
    return built


def remembered(key: str, build: Callable[[], T], state: Callable[[T], dict], restore: Callable[[dict], T],
               accept: Callable[[dict], bool], group: str = "", keep: int = 0) -> T:
    """An object kept as tensors (`tensors`): restored from what was saved under `key`, or built.

    A process that builds it uses what it built, not a copy read back from the file it wrote.
    """
    built: list[T] = []

    def build_state() -> dict:
        built.append(build())
        return state(built[0])

    found = tensors(key, build_state, accept, group, keep)
    return built[0] if built else restore(found)
