"""Keep a memory-mapped weight's pages out of resident memory once it has been read.

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

`FileRows` goes further for the head's scattered rows: it reads them from the
file with pread, so they are never mapped at all.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import os
import sys
import weakref

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


_M_MMAP_THRESHOLD = -3       # mallopt's parameter number (malloc.h)
MMAP_THRESHOLD = 4 << 20     # bytes: allocations this large get their own mapping


@functools.cache
def map_large_allocations() -> bool:
    """Give every allocation of 4 MB or more its own mapping, returned to the OS when freed.

    glibc serves a large allocation with its own mapping only above a threshold
    that *rises* each time such a mapping is freed, up to 32 MB. A batch frees
    16 MB logits and multi-MB activations every step, so the threshold climbs and
    later ones land in the heap, whose freed space stays resident and fragments:
    24 receipts at batch 16 peaked at 1,488 MB, and at 1,305 MB with the threshold
    fixed at 4 MB, at the same speed (`bench/bench_rss.py`, docs/performance.md).
    Smaller allocations still come from the heap, where per-step mapping would
    cost page faults (1 MB: ~15 % slower).

    Process-wide, as the allocator is; a threshold the user set with glibc's own
    `MALLOC_MMAP_THRESHOLD_` is left alone. True if it was set here.
    """
    if _LIBC is None or not hasattr(_LIBC, "mallopt") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    return _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1


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
    return _mapping(first, end) is not None


def _mapping(first: int, end: int) -> tuple[str, int, int] | None:
    """(path, file offset of `first`, inode) of the private file mapping holding [first, end), else None."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(maxsplit=5)
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                if lo <= first and end <= hi:
                    path = parts[5].strip() if len(parts) > 5 else ""
                    if path.startswith("/") and os.path.isfile(path) and "s" not in parts[1]:
                        return path, int(parts[2], 16) + first - lo, int(parts[4])
                    return None
    except OSError:
        pass
    return None


class FileRows:
    """Rows of a file-backed weight, read from the file instead of through its memory map.

    The kernel maps a whole large folio (up to 2 MB) on each fault of a file
    mapping, so gathering the ~500 scattered head rows a batch-16 step rescores,
    or the embedding rows of a prefilled document, made up to ~600 KB per row
    resident: a gigabyte of the head was back between two `release`s (the peak
    of a batch's memory, measured). pread copies just the 2.5 KB of each row out
    of the page cache and maps nothing: ~5 us a row, the same bytes.

    Only for a contiguous 2-D weight whose pages were never written (so the file
    holds its values) and whose file is still the one mapped; `of` returns None
    otherwise, and the caller reads the tensor as usual.
    """

    def __init__(self, path: str, fd: int, offset: int, shape: tuple[int, int], dtype: torch.dtype):
        self.path, self.fd, self.offset, self.shape, self.dtype = path, fd, offset, shape, dtype
        self.row_bytes = shape[1] * torch.empty(0, dtype=dtype).element_size()
        weakref.finalize(self, os.close, fd)

    @classmethod
    def of(cls, tensor: torch.Tensor) -> "FileRows | None":
        if tensor.dim() != 2 or tensor.device.type != "cpu" or not tensor.is_contiguous() or _LIBC is None:
            return None
        start = tensor.data_ptr()
        found = _mapping(start, start + tensor.numel() * tensor.element_size())
        if found is None or resident_pages(tensor)[1]:
            return None  # not a file mapping, or some page was written: the file is not the tensor
        path, offset, inode = found
        fd = os.open(path, os.O_RDONLY)
        if os.fstat(fd).st_ino != inode:  # replaced on disk since it was mapped
            os.close(fd)
            return None
        return cls(path, fd, offset, tuple(tensor.shape), tensor.dtype)

    def identity(self) -> str:
        """Which bytes these are: the file (path, inode, size, mtime) and where in it, as what."""
        info = os.fstat(self.fd)
        return (f"{self.path} inode {info.st_ino} size {info.st_size} mtime {info.st_mtime_ns} "
                f"offset {self.offset} shape {self.shape} {self.dtype}")

    def gather(self, ids: torch.Tensor) -> torch.Tensor:
        """weight[ids] for 1-D ids, without mapping any of the file's pages."""
        out = torch.empty((len(ids), self.shape[1]), dtype=self.dtype)
        listed = ids.tolist()
        if listed and not 0 <= min(listed) <= max(listed) < self.shape[0]:
            raise IndexError(f"row ids must be in [0, {self.shape[0]})")
        view = memoryview(out.view(torch.uint8).numpy()).cast("B") if listed else None
        size = self.row_bytes
        for j, i in enumerate(listed):
            if os.preadv(self.fd, [view[j * size:(j + 1) * size]], self.offset + i * size) != size:
                raise OSError(f"short read from the weight file at row {i}")
        return out
