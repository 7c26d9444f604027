"""Simulated GPU: vLLM's real engine and server, with the GPU's work replaced by a model."""
