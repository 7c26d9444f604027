"""The local CodeLlama-34B folder: real architecture numbers, a locally trained 32000-token tokenizer."""

import json

from transformers import AutoConfig, AutoTokenizer

from vllm_cfs.sim.model_dir import codellama_34b_dir, main


def test_folder_loads_with_transformers():
    folder = codellama_34b_dir()
    config = AutoConfig.from_pretrained(folder)
    assert config.architectures == ["LlamaForCausalLM"]
    assert (config.num_hidden_layers, config.hidden_size, config.num_key_value_heads) == (48, 8192, 8)
    assert (config.max_position_embeddings, config.rope_theta, str(config.torch_dtype)) == (16384, 1e6, "torch.bfloat16")
    assert not list(folder.glob("*.safetensors")) and not list(folder.glob("*.bin"))

    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert len(tokenizer) == 32000
    assert (tokenizer.unk_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    ids = tokenizer("def fibonacci(n):\n    return n").input_ids
    assert ids[0] == 1 and 2 not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == "def fibonacci(n):\n    return n"


def test_cli_prints_the_cached_folder(capsys):
    assert main([]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == str(codellama_34b_dir())
    assert json.loads((codellama_34b_dir() / "config.json").read_text())["vocab_size"] == 32000
