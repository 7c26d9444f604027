"""Print the simulated GPU's figures for a setup: KV blocks, prefill, decode and swap times,
and (with --server-start) how long `vllm serve` takes to start on it (logic: vllm_cfs.sim.figures).

    python benchmarks/sim_figures.py                      # the reference setup
    python benchmarks/sim_figures.py --profile h200 --tensor-parallel-size 1 --server-start
"""

from vllm_cfs.sim.figures import main

if __name__ == "__main__":
    raise SystemExit(main())
