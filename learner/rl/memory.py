"""Peak memory of a block of work (the actor update), on CUDA or the CPU.

CUDA: ``torch.cuda.max_memory_allocated`` above what was allocated before the block.
CPU: there is no allocator peak counter, so two figures are taken:
* ``saved_bytes``: bytes of the distinct tensors autograd saved for backward during
  the block (exact and deterministic; it is what grows with the actor batch);
* ``rss_rise``: resident-set peak above the level before the block, sampled every
  millisecond by a thread (an approximation: glibc keeps freed pages, so a block
  that fits in memory a previous one released shows a smaller rise).
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:  # not Linux: fall back to the lifetime peak
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class MemoryReading:
    saved_bytes: int = 0
    rss_rise: int = 0
    cuda_peak: int | None = None  # bytes above the allocation at entry, CUDA only


@contextmanager
def measure_peak(device: torch.device | str = "cpu", sample_s: float = 0.001):
    """``with measure_peak() as reading: ...`` fills ``reading`` when the block ends."""
    device = torch.device(device)
    reading = MemoryReading()
    storages: set[int] = set()

    def pack(tensor: torch.Tensor):
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key not in storages:
            storages.add(key)
            reading.saved_bytes += storage.nbytes()
        return tensor

    start_rss = rss_bytes()
    peak = [start_rss]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(sample_s)

    sampler = threading.Thread(target=sample, daemon=True)
    cuda_start = 0
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        cuda_start = torch.cuda.memory_allocated(device)
    sampler.start()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            yield reading
    finally:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            reading.cuda_peak = torch.cuda.max_memory_allocated(device) - cuda_start
        stop.set()
        sampler.join()
        reading.rss_rise = max(0, max(peak[0], rss_bytes()) - start_rss)
