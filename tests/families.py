"""Tiny random checkpoints of every model family the debugger supports (for tests).

Each config: 2 layers, d_model 32-64, 4 query heads (2 kv heads where the family has GQA),
a ~400-token BPE vocabulary. Every parameter (weights, biases, norm gains) is re-randomised
so nothing is trivially 0 or 1.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from helpers import build_tokenizer

COMMON = dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=48,
              max_position_embeddings=64)


def _configs(vocab: int, bos: int) -> dict:
    from transformers import (BloomConfig, GPT2Config, GPTJConfig, GPTNeoXConfig, Gemma2Config, Gemma3TextConfig,
                              GemmaConfig, LlamaConfig, MistralConfig, Olmo2Config, OPTConfig, Phi3Config, PhiConfig,
                              Qwen2Config, Qwen3Config)

    ids = dict(vocab_size=vocab, bos_token_id=bos, eos_token_id=bos, pad_token_id=bos)
    llama_like = dict(COMMON, **ids, hidden_act="silu")
    return {
        "gpt2": GPT2Config(n_positions=64, n_embd=32, n_layer=2, n_head=4, **ids),
        "opt": OPTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, ffn_dim=48,
                         max_position_embeddings=64, word_embed_proj_dim=32, **ids),
        "bloom": BloomConfig(hidden_size=32, n_layer=2, n_head=4, **ids),
        "gpt_neox": GPTNeoXConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                                  max_position_embeddings=64, rotary_pct=0.5, use_parallel_residual=True, **ids),
        "gptj": GPTJConfig(n_embd=32, n_layer=2, n_head=4, n_positions=64, rotary_dim=4, n_inner=48, **ids),
        "llama": LlamaConfig(**llama_like, num_key_value_heads=4, attention_bias=True, mlp_bias=True),
        "llama_gqa": LlamaConfig(**llama_like, num_key_value_heads=2),
        "mistral": MistralConfig(**llama_like, num_key_value_heads=2, sliding_window=4),
        "qwen2": Qwen2Config(**llama_like, num_key_value_heads=2),
        "qwen3": Qwen3Config(**llama_like, num_key_value_heads=2, head_dim=8),
        "gemma": GemmaConfig(**dict(llama_like, hidden_act="gelu_pytorch_tanh"), num_key_value_heads=1, head_dim=8),
        "gemma2": Gemma2Config(**dict(llama_like, hidden_act="gelu_pytorch_tanh"), num_key_value_heads=2, head_dim=8,
                               attn_logit_softcapping=5.0, final_logit_softcapping=3.0, sliding_window=4,
                               query_pre_attn_scalar=8),
        "gemma3": Gemma3TextConfig(**dict(llama_like, hidden_act="gelu_pytorch_tanh"), num_key_value_heads=2,
                                   head_dim=8, sliding_window=4, query_pre_attn_scalar=8,
                                   layer_types=["sliding_attention", "full_attention"]),  # two rotary bases
        "phi": PhiConfig(**dict(COMMON, **ids), partial_rotary_factor=0.5),
        "phi3": Phi3Config(**llama_like, num_key_value_heads=2),
        "olmo2": Olmo2Config(**llama_like, num_key_value_heads=2),
    }


FAMILIES = ["gpt2", "opt", "bloom", "gpt_neox", "gptj", "llama", "llama_gqa", "mistral", "qwen2", "qwen3", "gemma",
            "gemma2", "gemma3", "phi", "phi3", "olmo2"]


def randomise(model, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            low = name.lower()
            if p.dim() == 1 and ("norm" in low or "ln" in low) and name.endswith("weight"):
                p.copy_(1 + 0.3 * r if "gemma" not in type(model).__name__.lower() else 0.3 * r)
            elif p.dim() == 1:
                p.copy_(0.1 * r)
            else:
                p.copy_(0.15 * r)


@lru_cache(maxsize=1)
def _tokenizer():
    return build_tokenizer(400)  # trained once per session (it is the same for every family)


def build_family_dir(family: str, path: Path, seed: int = 0) -> Path:
    from transformers import AutoModelForCausalLM

    tok = _tokenizer()
    cfg = _configs(len(tok), tok.bos_token_id)[family]
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    randomise(model, seed)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
