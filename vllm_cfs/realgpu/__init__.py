"""vLLM V1 with our schedulers on a real GPU host that has torch but no network.

``bundle`` (run here, in .venv-v1) packs what that host lacks: the V1 pin's vLLM, the packages
its own ``pip list`` does not hold, and the CodeLlama-34B model folder (config and tokenizer;
``--load-format dummy`` gives random weights), in parts small enough to carry one at a time.
``unpack`` (run there, standard library only) checks the parts, joins and installs them.
``session`` (run there) serves and bursts: vLLM's default, FairScheduler and CFS, our client and
vLLM's ``vllm bench serve``, the results in our schema.

On a GPU host with network none of this is needed: ``pip install vllm==0.24.0 -e .`` (docs/real-gpu.md).
"""
