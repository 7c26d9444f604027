"""Study of two CFSScheduler design choices on one set of traces, in scheduling steps: prefill of
new arrivals while victims are swapped, and the minimum granularity (logic: vllm_cfs.lab.admission).

    python benchmarks/cfs_admission.py --interval 10 --seeds 5
"""

from vllm_cfs.lab.admission import main

if __name__ == "__main__":
    raise SystemExit(main())
