"""Give the pages of a memory-mapped weight back to the page cache once it has been read.

transformers loads a safetensors checkpoint as a private memory map: a weight
nobody writes stays backed by the file, and only the pages that were read
count in the process's resident memory. The fast engine reads the 671 MB fp32
output head once, to build its bf16 screen copy, and afterwards touches only a
few rows per step (rescoring, small allowed sets). Left alone, those 671 MB
would stay resident for the life of the process; `release` drops them from
this process (they stay in the kernel's page cache, so a later read is a
cheap soft fault, not a disk read).

Dropping a page of a private mapping discards any write made to it, so
`release` first reads /proc/self/pagemap and refuses unless every resident
page in the range is still the file's own (never written). A tensor in
ordinary (anonymous) memory is therefore never touched. Linux only; elsewhere
it does nothing.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys

import torch

_PAGE = mmap.PAGESIZE
_FILE_OR_SHARED = 1 << 61  # clear on a present page that is private anonymous memory (e.g. copied on write)
_MADV_DONTNEED = 4


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


def _span(tensor: torch.Tensor) -> tuple[int, int]:
    """The whole pages inside `tensor`'s bytes (partial pages at the ends are left alone)."""
    start = tensor.data_ptr()
    end = start + tensor.numel() * tensor.element_size()
    first = -(-start // _PAGE) * _PAGE
    return first, max(first, end // _PAGE * _PAGE)


def resident_pages(tensor: torch.Tensor) -> tuple[int, int]:
    """(resident pages, of which private anonymous) in `tensor`'s whole pages; (0, 0) if unknown."""
    first, end = _span(tensor)
    count = (end - first) // _PAGE
    if count == 0 or _LIBC is None:
        return 0, 0
    try:
        with open("/proc/self/pagemap", "rb") as f:
            f.seek(first // _PAGE * 8)
            raw = f.read(count * 8)
    except OSError:
        return 0, 0
    if not raw:
        return 0, 0
    entries = torch.frombuffer(bytearray(raw), dtype=torch.int64)  # bit 63 is the sign bit here
    present = entries < 0
    anonymous = present & ((entries & _FILE_OR_SHARED) == 0)
    return int(present.sum()), int(anonymous.sum())


def release(tensor: torch.Tensor) -> bool:
    """Drop `tensor`'s resident pages if it is a never-written file mapping; True if it did.

    The tensor stays valid: its next read faults the pages back in from the file.
    """
    if tensor.device.type != "cpu" or not tensor.is_contiguous() or _LIBC is None:
        return False
    first, end = _span(tensor)
    if end <= first:
        return False
    present, anonymous = resident_pages(tensor)
    if anonymous or not present:
        return False  # written (or ordinary) memory: dropping it would lose data
    if not _is_file_mapping(first, end):
        return False
    return _LIBC.madvise(first, end - first, _MADV_DONTNEED) == 0


def trim() -> None:
    """Return the C heap's free memory to the OS (glibc's malloc_trim); a no-op elsewhere.

    Weights freed after a conversion (fp32 layer weights replaced by bf16) leave
    their space in glibc's heap, still counted as resident, until trimmed.
    """
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


def is_file_backed(tensor: torch.Tensor) -> bool:
    """True if `tensor`'s memory lies in a private mapping of a regular file (what `release` can drop)."""
    first, end = _span(tensor)
    return tensor.device.type == "cpu" and _LIBC is not None and end > first and _is_file_mapping(first, end)


def _is_file_mapping(first: int, end: int) -> bool:
    """True if [first, end) lies inside one mapping of a regular file (not anonymous, not a device)."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(maxsplit=5)
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                if lo <= first and end <= hi:
                    path = parts[5].strip() if len(parts) > 5 else ""
                    return path.startswith("/") and os.path.isfile(path) and "s" not in parts[1]
    except OSError:
        pass
    return False
