"""vLLM platform plugin for the simulated GPU (placeholder until the simulator lands)."""


def activate():
    return None
