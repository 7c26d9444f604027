"""What a run was measured on: device, driver, library versions, clocks."""

from __future__ import annotations

import datetime
import platform
import subprocess
from dataclasses import dataclass


@dataclass
class Environment:
    device: str
    gpu: str
    driver: str | None
    torch: str
    cuda: str | None
    python: str
    memory_bytes: int
    date: str
    nvidia_smi: str | None = None


def describe_environment(torch, device) -> Environment:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if device.type != "cuda":
        return Environment("cpu", f"CPU ({platform.processor() or platform.machine()})", None,
                           torch.__version__, None, platform.python_version(), 0, now)
    props = torch.cuda.get_device_properties(device)
    driver = _nvidia_smi("driver_version")
    smi = _nvidia_smi("name,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.limit,"
                      "pcie.link.gen.current,pcie.link.gen.max,pcie.link.width.current")
    return Environment("cuda", props.name, driver, torch.__version__, torch.version.cuda,
                       platform.python_version(), int(props.total_memory), now, smi)


def _nvidia_smi(fields: str) -> str | None:
    try:
        return subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
