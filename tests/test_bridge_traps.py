"""Pins TransformerBridge (transformer-lens 4.3.0) behaviours the engine works around. If an
upgrade changes one of these, this file says which assumption to revisit."""

import torch

TOKS = torch.tensor([[0, 5, 9, 20, 33, 41, 7]])


def test_resid_mid_is_an_alias_of_ln2_input(tiny):
    """Patching hook_resid_mid only changes the MLP's input, not the residual stream."""
    b = tiny.bridge
    zero = lambda x, hook: torch.zeros_like(x)
    via_mid = b.run_with_hooks(TOKS, fwd_hooks=[("blocks.0.hook_resid_mid", zero)])
    via_ln2 = b.run_with_hooks(TOKS, fwd_hooks=[("blocks.0.ln2.hook_in", zero)])
    assert torch.equal(via_mid, via_ln2)
    # really zeroing the residual after attention (attn_out := -resid_pre) gives another result
    store = {}
    keep = lambda x, hook: store.setdefault("pre", x)
    cancel = lambda x, hook: -store["pre"]
    real = b.run_with_hooks(TOKS, fwd_hooks=[("blocks.0.hook_resid_pre", keep), ("blocks.0.hook_attn_out", cancel)])
    assert not torch.allclose(real, via_mid)


def test_retain_grad_in_observe_only_hook_at_z_gets_none(tiny):
    b = tiny.bridge
    seen = {}

    def observe(x, hook):
        x.retain_grad()
        seen["z"] = x

    with torch.enable_grad():
        emb_leaf = {}

        def leaf(x, hook):
            emb_leaf["e"] = x.detach().requires_grad_(True)
            return emb_leaf["e"]

        out = b.run_with_hooks(TOKS, fwd_hooks=[("hook_embed", leaf), ("blocks.0.attn.hook_z", observe)])
        out[0, -1, 3].backward()
    assert emb_leaf["e"].grad is not None  # the backward did run
    assert seen["z"].grad is None


def test_hook_name_is_the_underlying_name(tiny):
    names = []
    tiny.bridge.run_with_hooks(TOKS, fwd_hooks=[("blocks.0.attn.hook_z", lambda x, hook: names.append(hook.name))])
    assert names and names[0] != "blocks.0.attn.hook_z"


def test_run_with_cache_stores_aliases_twice(tiny):
    _, cache = tiny.bridge.run_with_cache(TOKS)
    assert "blocks.0.hook_resid_mid" in cache and "blocks.0.ln2.hook_in" in cache
    assert torch.equal(cache["blocks.0.hook_resid_mid"], cache["blocks.0.ln2.hook_in"])
    _, filtered = tiny.bridge.run_with_cache(TOKS, names_filter=lambda n: n == "blocks.0.hook_resid_mid")
    assert list(filtered.keys()) == ["blocks.0.hook_resid_mid"]


def test_hf_model_argument_is_mutated_in_place(tiny_dir):
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

    hf = GPT2LMHeadModel.from_pretrained(tiny_dir).eval()
    assert type(hf.transformer.h[0]).__name__ == "GPT2Block"
    TransformerBridge.boot_transformers(str(tiny_dir), hf_model=hf,
                                        tokenizer=PreTrainedTokenizerFast.from_pretrained(tiny_dir))
    assert type(hf.transformer.h[0]).__name__ != "GPT2Block"
