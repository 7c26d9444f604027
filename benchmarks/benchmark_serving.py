"""Fire a burst of streaming completions at an OpenAI-compatible server and report TTFT/TPOT per request.

Our options (what hw2/client.sh uses):

    python benchmarks/benchmark_serving.py --tokenizer TOKENIZER_DIR \\
        --dataset-name sharegpt --num-prompts 50 --request-rate 3 \\
        --result-json burst.json --result-text burst.txt

or vLLM's (the options of vLLM's own benchmarks/benchmark_serving.py):

    python benchmarks/benchmark_serving.py --backend vllm --model codellama/CodeLlama-34b-hf \\
        --dataset-name random --num-prompts 50 --request-rate 3 --ignore-eos --save-result

With our options stdout gets our text report; with vLLM's, vLLM's summary block (see --help and
vllm_cfs/bench/cli.py). Exit code: 0 when every request succeeded, 1 when any failed (each failure
is in the report with its reason), 2 for bad input.
"""

import sys

from vllm_cfs.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
