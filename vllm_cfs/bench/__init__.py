"""The burst benchmark: a seeded workload and a streaming client; its results are vllm_cfs.results.

- ``workload``: prompts, their lengths and arrival times (``datasets`` holds the prompt sources);
- ``client``: issues the burst against an OpenAI-compatible server and times every token;
- ``report``: the readable text report;
- ``vllm_dialect``: vLLM's summary block and ``--save-result`` JSON, from the same records;
- ``cli``: the command line of ``benchmarks/benchmark_serving.py`` (our options and vLLM's).

Nothing here imports vLLM or torch; a tokenizer (transformers) is loaded only when asked for.
"""
