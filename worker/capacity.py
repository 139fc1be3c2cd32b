"""What this machine offers: cores (CPU affinity), memory, NVIDIA GPUs when
``nvidia-smi`` is present; each overridable by flag."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

import psutil

from banyan.resources import Resources


@dataclass(frozen=True)
class Gpu:
    index: int
    memory_bytes: int
    compute_capability: str


def detect_gpus() -> list[Gpu]:
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return []
    try:
        out = subprocess.run(
            [tool, "--query-gpu=index,memory.total,compute_cap", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3 and parts[0].isdigit():
            try:
                gpus.append(Gpu(int(parts[0]), int(float(parts[1])) * 2**20, parts[2]))
            except ValueError:
                continue
    return gpus


def detect(
    *,
    cores: float | None = None,
    memory: int | None = None,
    gpus: int | None = None,
    custom: dict[str, float] | None = None,
) -> tuple[Resources, list[int]]:
    """The capacity to advertise and the GPU indices this worker may hand out."""
    found_gpus = detect_gpus()
    indices = [g.index for g in found_gpus]
    if gpus is not None:
        indices = indices[:gpus] if len(indices) >= gpus else list(range(gpus))
    capacity = Resources.model_validate({
        "cores": cores if cores is not None else len(os.sched_getaffinity(0)),
        "memory": memory if memory is not None else psutil.virtual_memory().total,
        "gpus": len(indices),
        **(custom or {}),
    })  # fmt: skip
    return capacity, indices
