"""A CPU calibration figure to print beside absolute timings.

The shared machines run 2-3x faster or slower from one day (or hour) to the next, depending on what
else runs. Two fixed workloads, timed in this process, say how fast the CPU was when a benchmark ran:
``matmul_ms`` (torch, one thread: 200 products of 256x256 matrices, the policy's kind of work) and
``python_ms`` (a pure-Python loop of 2M additions, the request path's kind). Compare timings from
different runs only after scaling by these.

    python -m ops.bench.calibrate
"""

from __future__ import annotations

import json
import time


def cpu_calibration(repeats: int = 3) -> dict:
    """Best of ``repeats`` for each workload, in milliseconds (lower: faster machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a = torch.randn(256, 256, generator=torch.Generator().manual_seed(0))
        matmul = []
        for _ in range(repeats):
            started = time.perf_counter()
            x = a
            for _ in range(200):
                x = (x @ a).tanh()
            matmul.append((time.perf_counter() - started) * 1000)
    finally:
        torch.set_num_threads(threads)
    python = []
    for _ in range(repeats):
        started = time.perf_counter()
        total = 0
        for i in range(2_000_000):
            total += i
        python.append((time.perf_counter() - started) * 1000)
    return {"matmul_ms": round(min(matmul), 1), "python_ms": round(min(python), 1)}


if __name__ == "__main__":
    print(json.dumps(cpu_calibration()))
