"""Load: a burst of requests all at once on the simulated vLLM server, and what it left behind
(logic: vllm_cfs.bench.load_burst; exit code 1 if a check fails).

    python benchmarks/load_burst.py                      # 1000 ShareGPT requests, CFS every 10 steps
    python benchmarks/load_burst.py --num-prompts 200 --interval 0
"""

from vllm_cfs.bench.load_burst import main

if __name__ == "__main__":
    raise SystemExit(main())
