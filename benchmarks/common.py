"""What the benchmark scripts print about the machine they ran on."""

from __future__ import annotations

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
