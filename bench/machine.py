"""Machine facts stamped on every report."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any

__all__ = ["machine_facts"]


def machine_facts() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    libs: dict[str, str | None] = {}
    for pkg in ("torch", "numpy", "faust-streaming", "aiokafka", "confluent-kafka", "rocksdict"):
        try:
            libs[pkg] = version(pkg)
        except PackageNotFoundError:
            libs[pkg] = None
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "gpu": gpu,
            "python": platform.python_version(), "platform": platform.platform(), "libraries": libs}
