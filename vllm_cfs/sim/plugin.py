"""vLLM platform plugin entry point for the simulated GPU, for either engine; imports no vLLM.

Active only when ``VLLM_CFS_SIM_GPU`` names a GPU profile (a shipped name or a profile JSON
path); otherwise ``activate`` returns None and vLLM picks the real hardware as usual. vLLM
0.9.x gets the V0 platform (vllm_cfs.sim.platform), any other release the V1 one
(vllm_cfs.sim.v1.platform): the two engines need different executors and workers, and a
platform module imports its engine's classes at import time, so the choice is made here,
from the installed distribution's version, before either is imported.
"""

from __future__ import annotations

import os
from importlib.metadata import version
from typing import Optional

from vllm_cfs.sim.profile import PROFILE_ENV, ProfileError, load_profile

V0_SERIES = "0.9."
V0_PLATFORM = "vllm_cfs.sim.platform.SimulatedGPUPlatform"
V1_PLATFORM = "vllm_cfs.sim.v1.platform.SimulatedGPUPlatform"


def platform_for(vllm_version: str) -> str:
    return V0_PLATFORM if vllm_version.startswith(V0_SERIES) else V1_PLATFORM


def activate() -> Optional[str]:
    name = os.environ.get(PROFILE_ENV)
    if not name:
        return None
    try:
        load_profile(name)
    except ProfileError as exc:
        # vLLM swallows exceptions from platform plugins and would quietly run without a GPU;
        # SystemExit is not an Exception, so the user sees this one line instead.
        raise SystemExit(f"error: {exc}") from None
    # A simulated run is no GPU usage to report to vLLM's usage-stats server (the only address
    # vLLM contacts once the model resolves offline), unless the user says otherwise.
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    return platform_for(version("vllm"))
