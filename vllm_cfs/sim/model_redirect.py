"""Hub ids on the simulated GPU: ``vllm serve codellama/CodeLlama-34b-hf`` works offline.

The mechanism is vLLM's own model redirect: ``VLLM_MODEL_REDIRECT_PATH`` names a file that maps
model ids to local folders, and ``ModelConfig.__post_init__`` passes the model, the tokenizer and
``hf_config_path`` through ``vllm.transformers_utils.utils.maybe_model_redirect``. The platform
(vllm_cfs.sim.platform) installs a redirect file for the ids in ``model_dir.SHIPPED_MODELS`` in
``pre_register_and_update()``, which ``EngineArgs.create_engine_config`` calls right before it
builds the ModelConfig. From there on vLLM reads config.json, generation_config.json and the
tokenizer from the shipped folder and never asks the hub, and nothing is written to the Hugging
Face cache. The OpenAI server lists ``args.model``, the id as typed, in ``/v1/models``; as with
any vLLM redirect, ``ModelConfig.model``, ``.tokenizer`` and ``.served_model_name`` (the engine's
config line, the metrics' ``model_name`` label) name the folder.

Processes of ``vllm serve`` (V0): the API server builds the ModelConfig and hands the finished
VllmConfig, pickled, to the engine process it spawns, which does not build another; the engine
process inherits ``VLLM_MODEL_REDIRECT_PATH`` from the environment in any case.

On vLLM V1 (0.24) the redirect alone is not enough for ``vllm serve``: 0.24 looks the id up
before ModelConfig applies it (``resolve_model_arguments`` says where), so the V1 platform also
resolves shipped ids while the command line is parsed.

A user's own ``VLLM_MODEL_REDIRECT_PATH`` keeps working: its entries are merged in and win.
Without the simulated GPU none of this runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Optional

from vllm_cfs.sim.model_dir import SHIPPED_MODELS, UnknownModelError, cache_root, check_servable, local_model_dir

REDIRECT_ENV = "VLLM_MODEL_REDIRECT_PATH"


def install() -> Path:
    """Make vLLM resolve the shipped hub ids to their folders (built on first use); return the file.

    The one patch: vLLM binds ``VLLM_MODEL_REDIRECT_PATH`` when it imports
    ``vllm.transformers_utils.utils`` (``from vllm.envs import ...``), and every vLLM entry point
    imports that module before any plugin runs; so besides the environment (for processes started
    later) the module's copy is set here, the only place that does so. (vLLM caches each id's
    answer: this has to run before the process first looks an id up, as pre_register_and_update
    does.)
    """
    import vllm.transformers_utils.utils as hf_utils

    mapping = {model: str(build()) for model, build in SHIPPED_MODELS.items()}
    mapping.update(_read_user_redirects(hf_utils))
    path = _write_redirect_file(mapping)
    os.environ[REDIRECT_ENV] = str(path)
    hf_utils.VLLM_MODEL_REDIRECT_PATH = str(path)
    return path


def guard_model_arguments(parser) -> None:
    """Refuse, while the command line is parsed, a model or tokenizer the simulator cannot serve:
    one line on stderr and exit code 2, before vLLM would go to the hub and end in a traceback."""
    for action in parser._actions:  # argparse keeps no public list of a parser's arguments
        if action.dest in ("model_tag", "model", "tokenizer", "hf_config_path"):
            action.type = _checked_model_argument(action.type, action.default)


def resolve_model_arguments(parser) -> None:
    """vLLM 0.24 (V1): a shipped hub id becomes its folder while the command line is parsed, and,
    unless --served-model-name is given, the id as typed is the served model name.

    The redirect file alone does not do under V1: before ModelConfig applies it, 0.24 reads the
    model's config.json by its id to detect a speculators model, and with HF_HUB_OFFLINE=1
    resolves the id through the Hugging Face cache; both look for the hub id itself. Resolved
    here, every one of them reads the folder, while clients still name the model by its id
    (``/v1/models`` lists it). Other arguments are refused as ``guard_model_arguments`` does.
    """
    served = _ServedModelName()
    for action in parser._actions:  # argparse keeps no public list of a parser's arguments
        if action.dest in ("model_tag", "model", "tokenizer", "hf_config_path"):
            names = served if action.dest in ("model_tag", "model") else None
            action.type = _resolved_model_argument(action.type, action.default, names)
        elif action.dest == "served_model_name" and action.default is None:
            action.default = served


class _ServedModelName(list):
    """--served-model-name's default: filled with the model as typed, while it is parsed (an
    explicit --served-model-name replaces it, as any default)."""


def _resolved_model_argument(convert, default, served: Optional[_ServedModelName]):
    check = _checked_model_argument(None, default)

    def resolve(value: str):
        if value == default:
            return convert(value) if convert else value  # argparse converting the unused default
        check(value)
        if served is not None:
            served[:] = [value]
        folder = local_model_dir(value) if value in SHIPPED_MODELS else None
        value = str(folder) if folder is not None else value
        return convert(value) if convert else value

    return resolve


def _checked_model_argument(convert, default):
    def check(value: str):
        # argparse also converts string defaults (--model's is vLLM's example model): those pass.
        if value != default and value not in _read_user_redirects():
            try:
                check_servable(value)
            except UnknownModelError as exc:
                print(f"error: {exc}", file=sys.stderr)
                raise SystemExit(2) from None  # argparse's code for a bad argument
        return convert(value) if convert else value

    return check


def _read_user_redirects(hf_utils=None) -> dict[str, str]:
    path = os.environ.get(REDIRECT_ENV)
    if not path or not Path(path).is_file():
        return {}
    if hf_utils is None:
        import vllm.transformers_utils.utils as hf_utils
    # vLLM's own readers, so the file means here what it means to vLLM (JSON or "id folder" lines).
    return hf_utils._maybe_json_dict(path) or hf_utils._maybe_space_split_dict(path)


def _write_redirect_file(mapping: dict[str, str]) -> Path:
    text = json.dumps(mapping, indent=2, sort_keys=True) + "\n"
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"model-redirect-{hashlib.sha256(text.encode()).hexdigest()[:12]}.json"
    if not path.is_file():
        staging = root / f".{path.name}.{os.getpid()}"
        staging.write_text(text)
        staging.replace(path)  # atomic: a process reading it never sees half a file
    return path
