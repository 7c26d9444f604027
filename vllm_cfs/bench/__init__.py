"""The burst benchmark: a seeded workload, a streaming client, and the results every tool shares.

- ``workload``: prompts, their lengths and arrival times (``datasets`` holds the prompt sources);
- ``client``: issues the burst against an OpenAI-compatible server and times every token;
- ``results``: the per-request records and summary, and their JSON file (also the replay's output);
- ``report``: the readable text report;
- ``vllm_dialect``: vLLM's summary block and ``--save-result`` JSON, from the same records;
- ``cli``: the command line of ``benchmarks/benchmark_serving.py`` (our options and vLLM's).

Nothing here imports vLLM or torch; a tokenizer (transformers) is loaded only when asked for.
"""
