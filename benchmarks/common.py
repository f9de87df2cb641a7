"""What the benchmark scripts print about the machine they ran on, and the interval they share."""

from __future__ import annotations

import math
import platform
import threading

import torch


def describe_device(device: torch.device) -> str:
    """e.g. 'cuda (NVIDIA H100 80GB HBM3), torch 2.11.0, threads 16' or 'cpu (x86_64, AVX512),
    torch 2.14.1, threads 2' (the vector kernels torch uses on the CPU)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        kernels = torch.backends.cpu.get_cpu_capability()
        name = f"{platform.processor() or platform.machine()}, {kernels}"
    return f"{device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}"


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of a proportion."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


class GpuBusy(threading.Thread):
    """Mean of NVML's GPU utilisation (% of time a kernel ran) read every `every_s` seconds
    from start() until stopped.set()."""

    def __init__(self, device: torch.device | int = 0, every_s: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.device, self.every = device, every_s
        self.readings: list[int] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            self.readings.append(torch.cuda.utilization(self.device))

    def mean(self) -> float:
        return sum(self.readings) / len(self.readings) if self.readings else float("nan")
