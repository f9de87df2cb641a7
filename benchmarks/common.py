"""What the benchmark scripts print about the machine they ran on."""

from __future__ import annotations

import platform

import torch


def describe_device(device: torch.device) -> str:
    """e.g. 'cuda (NVIDIA H100 80GB HBM3), torch 2.11.0, threads 16'."""
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine()
    )
    return f"{device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}"
