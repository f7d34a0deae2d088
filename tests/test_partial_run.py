"""partial_run: re-running from the first edited layer gives the full re-run's logits, and the
blocks before it really do not compute."""

import threading

import pytest
import torch

from circuit_debugger.interventions import Intervention, build_hooks
from circuit_debugger.partial_run import capture, rerun, start_layer

PROMPT = "When Mary and John went to the store, John gave a drink to"


def test_engine_interventions_rerun_from_their_layer(tiny):
    m = tiny
    ids = m.tokenize(PROMPT)
    L = m.shape.n_layers
    clean, blocks = capture(m, ids)
    with torch.no_grad():
        assert torch.equal(clean, m.run(m.tokens_tensor(ids)))
    for spec in ([("L1.H2", "zero")], [("L1.N5", "scale", 3.0)], [("L1.MLP", "zero")], [("L1.RESID", "scale", 0.5)],
                 [("L0.H1", "zero"), ("L1.H0", "zero")], [("EMB", "scale", 2.0)]):
        ivs = [Intervention.make(node=s[0], op=s[1], value=s[2] if len(s) > 2 else None) for s in spec]
        hooks = build_hooks(ivs, L, {}, autoencoders=m.autoencoders)
        k = start_layer(ivs, L)
        assert k == min((iv.node.layer or 0) for iv in ivs)
        full = m.run(m.tokens_tensor(ids), hooks)
        part = rerun(m, blocks, hooks, k)
        assert torch.allclose(part, full, atol=1e-6, rtol=0), spec
        assert not torch.allclose(part, clean, atol=1e-4), f"{spec} changed nothing: the check proves nothing"
        for pos in (len(ids) - 1, 3):
            at = rerun(m, blocks, hooks, k, logit_position=pos)[:, pos]
            assert torch.allclose(at, full[:, pos], atol=1e-5, rtol=0), (spec, pos)


def test_earlier_blocks_do_not_run(tiny):
    m = tiny
    ids = m.tokenize(PROMPT)
    _, blocks = capture(m, ids)
    calls = []
    inner = [b._original_component for b in m.bridge.blocks]
    handles = [mod.register_forward_hook(lambda *a, l=l: calls.append(l)) for l, mod in enumerate(inner)]
    try:
        rerun(m, blocks, [], 1)
        assert calls == [1]
        calls.clear()
        m.run(m.tokens_tensor(ids))  # and everything is back to normal afterwards
        assert calls == [0, 1]
    finally:
        for h in handles:
            h.remove()


def _bridge_model(path):
    """The parts of a DebugModel partial_run uses, around a raw bridge (for families the
    engine may not read yet)."""
    from types import SimpleNamespace

    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(str(path), device="cpu", dtype=torch.float32)
    bridge.eval()
    lock = threading.RLock()

    def run(tokens, hooks=(), grad=False):
        with lock, torch.set_grad_enabled(grad):
            return bridge.run_with_hooks(tokens, fwd_hooks=list(hooks))

    return SimpleNamespace(bridge=bridge, lock=lock, run=run,
                           tokens_tensor=lambda ids: torch.tensor([list(ids)]))


@pytest.mark.parametrize("family", ["gpt_neox", "llama_gqa"])
def test_rotary_and_gqa_families_through_the_bridge(tmp_path, family):
    import transformers as T
    from helpers import build_tokenizer

    tok = build_tokenizer(400)
    torch.manual_seed(0)
    if family == "gpt_neox":
        model = T.GPTNeoXForCausalLM(T.GPTNeoXConfig(
            vocab_size=len(tok), hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
            rotary_pct=0.25, use_parallel_residual=True, max_position_embeddings=64))
    else:
        model = T.LlamaForCausalLM(T.LlamaConfig(
            vocab_size=len(tok), hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=64, max_position_embeddings=64))
    model.eval().save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    m = _bridge_model(tmp_path)
    ids = [tok.bos_token_id] + tok.encode(PROMPT)
    clean, blocks = capture(m, ids)

    def zero_head(z, hook):
        z = z.clone()
        z[:, :, 1] = 0
        return z

    hooks = [("blocks.2.attn.hook_z", zero_head)]
    full = m.run(m.tokens_tensor(ids), hooks)
    part = rerun(m, blocks, hooks, 2)
    assert torch.allclose(part, full, atol=1e-6, rtol=0)
    assert not torch.allclose(part, clean, atol=1e-4)
    # twice in a row: the cached outputs were not modified by the first re-run
    assert torch.allclose(rerun(m, blocks, hooks, 2), full, atol=1e-6, rtol=0)
    last = len(ids) - 1
    assert torch.allclose(rerun(m, blocks, hooks, 2, logit_position=last)[:, last], full[:, last], atol=1e-5, rtol=0)


def test_batched_exact_ablation_from_layers_equals_the_engines(tiny):
    """Every head and a few neurons (some at a position): the same effects as the engine's
    full batched passes, with chunks that split the layers unevenly."""
    from circuit_debugger import attribution as A
    from circuit_debugger.nodes import parse_node
    from circuit_debugger.partial_run import exact_ablation_from_layers
    from circuit_debugger.targets import LogitDiff

    m = tiny
    ids = m.tokenize(PROMPT)
    L, H = m.shape.n_layers, m.shape.n_heads
    nodes = [parse_node(f"L{l}.H{h}") for l in range(L) for h in range(H)]
    nodes += [parse_node("L1.N3"), parse_node("L0.N7@4"), parse_node("L1.H2@2"), parse_node("L0.MLP")]
    target = LogitDiff(m, len(ids) - 1, m.codec.output_token(" Mary"), m.codec.output_token(" John"))
    clean, blocks = capture(m, ids)
    value = float(target.value({}, clean)[0])
    ours = exact_ablation_from_layers(m, ids, target, nodes, value, blocks, chunk=3)
    ref = A.exact_ablation(m, ids, target, [], {}, nodes, value)
    assert ours == pytest.approx(ref, abs=1e-5)
    at = exact_ablation_from_layers(m, ids, target, nodes, value, blocks, logit_position=target.position)
    assert at == pytest.approx(ref, abs=1e-5)
    assert max(abs(x) for x in ref) > 1e-3


@pytest.mark.parametrize("family", ["gpt2", "llama_gqa"])
def test_execute_partial_equals_execute(tmp_path, tiny, family):
    """Through the engine's execution layer: same logits at the position, same captures (at or
    after the first edited layer), same pre-edit records, for head, neuron and sublayer edits."""
    from circuit_debugger.execution import RunRequest, execute
    from circuit_debugger.loading import load_model
    from circuit_debugger.partial_run import execute_partial, first_layer

    if family == "gpt2":
        m = tiny
    else:
        import transformers as T
        from helpers import build_tokenizer

        tok = build_tokenizer(400)
        torch.manual_seed(1)
        T.LlamaForCausalLM(T.LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64,
                                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
                           ).eval().save_pretrained(tmp_path)
        tok.save_pretrained(tmp_path)
        m = load_model(str(tmp_path), name="llama")
    ids = m.tokenize(PROMPT)
    L = m.shape.n_layers
    _, blocks = capture(m, ids)
    last = len(ids) - 1
    for spec, cap_names in (([("L1.H2", "zero")], [f"blocks.{L - 1}.hook_resid_post"]),
                            ([("L1.MLP", "scale", 0.5)], []),
                            ([("L1.N4", "scale", 4.0), (f"L{L - 1}.H0", "zero")], [f"blocks.{L - 1}.attn.hook_z"])):
        ivs = [Intervention.make(node=s[0], op=s[1], value=s[2] if len(s) > 2 else None) for s in spec]
        req = RunRequest(ivs, {}, cap_names)
        assert first_layer(m, req) == 1
        full = execute(m, ids, req)
        part = execute_partial(m, blocks, req, logit_position=last)
        assert torch.allclose(part.logits[:, last], full.logits[:, last], atol=1e-5, rtol=0), spec
        assert part.edited == full.edited and set(part.acts) == set(full.acts)
        for k in full.acts:
            assert torch.allclose(part.acts[k], full.acts[k], atol=1e-5, rtol=0), (spec, k)
    # a capture below the first edited layer lowers where the run starts
    assert first_layer(m, RunRequest([Intervention.make(node="L2.H0", op="zero")], {}, ["blocks.0.hook_resid_post"])) == 0
