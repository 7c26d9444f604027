"""The simulated GPU on vLLM's V1 engine: platform, executor, worker and virtual-time replay."""
