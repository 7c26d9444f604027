"""GPU calibration of the simulated GPU: measure CodeLlama-34B-shaped work on a real GPU with
PyTorch alone (no vLLM), fit a profile's factors, and report against the cost model.

benchmarks/calibrate_gpu.py and benchmarks/calibration_report.py are the commands (cli.py).
"""
