"""The engine beside bare HuggingFace passes and nnsight 0.8.1, per family at realistic width.

    PYTHONPATH=backend .venv/bin/python benchmarks/bench_nnsight.py [--tokens 16] [--repeats 3]
        [--families gpt2,pythia,llama] [--threads 1]

Random weights, saved with `save_pretrained` and loaded three ways from the same directory: a
bare `transformers` model (the cost floor), nnsight's `LanguageModel` around another copy, and
the debugger (`load_model`). Shapes: GPT-2-small (12 layers, d 768, 12 heads, vocabulary 50257,
124 M parameters); Pythia-160M (GPT-NeoX: parallel blocks, rotary on 25% of each head, 12
layers, d 768, vocabulary 50304); a ~100 M-parameter Llama with grouped-query attention (12
layers, d 768, 12 query heads over 4 key/value heads, gated MLP 2048, vocabulary 32000, tied
embeddings). The question: logit(" Mary") − logit(" John") at the last of `--tokens` tokens.

Times are medians of calls made round-robin (one of each per round). "bare fwd+bwd" is a plain
HF forward and a backward of the logit difference to the activations (weights frozen, as act×grad
needs; a backward that also accumulates weight gradients costs more and would flatter the ratio).
Every engine call starts with ALL of the engine's caches empty, except the row marked
"clean pass cached" (what toggling an intervention in the UI costs once the prompt has run).
nnsight runs under `torch.no_grad()` (what a user ablating heads writes). Printed ratios:
  attribution / bare fwd+bwd            fresh "why A and not B" (every node)              goal <= 1.5
  one-head ablation / bare fwd          fresh (clean + edited pass), and clean cached     goal <= 1.0 (cached)
  one-head ablation / nnsight           same, vs nnsight's trace zeroing the head's o_proj input  goal <= 0.7
  one-head ablation, partial re-run     from the edited layer on cached block outputs, logits at the
                                        question's position only (partial_run.py; what
                                        Debugger.intervene runs when nothing is spliced)                                   goal <= 1.0 fwd, 0.7 nnsight
  all heads exact / nnsight batched     every head's exact zero-ablation effect in one batched call
                                        (engine: clean pass + `exact_ablation`, its default chunks of 32;
                                        nnsight: one trace over a batch of n_heads·n_layers + 1) goal <= 0.7
                                        and the same from each head's layer, logits at the question's
                                        position only (partial_run.exact_ablation_from_layers)
Numbers that must agree (ablation effects, ours vs nnsight's) are checked and printed too.
A family the engine cannot load yet is reported with the reason; its HF/nnsight rows still print.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))


def build(family: str, directory: Path, tiny: bool = False) -> Path:
    """A random-weight checkpoint of `family` at realistic width (or `tiny`, to check the
    script's mechanics quickly), saved to `directory`."""
    import transformers as T
    from helpers import build_tokenizer

    torch.manual_seed(0)
    d, n, v = (64, 2, 1000) if tiny else (768, 12, None)
    if family == "gpt2":
        cfg = T.GPT2Config(vocab_size=v or 50257, n_positions=1024, n_embd=d, n_layer=n, n_head=12 if not tiny else 4)
        model = T.GPT2LMHeadModel(cfg)
    elif family == "pythia":
        cfg = T.GPTNeoXConfig(vocab_size=v or 50304, hidden_size=d, num_hidden_layers=n,
                              num_attention_heads=12 if not tiny else 4, intermediate_size=4 * d, rotary_pct=0.25,
                              use_parallel_residual=True, max_position_embeddings=2048, tie_word_embeddings=False)
        model = T.GPTNeoXForCausalLM(cfg)
    elif family == "llama":
        cfg = T.LlamaConfig(vocab_size=v or 32000, hidden_size=d, num_hidden_layers=n,
                            num_attention_heads=12 if not tiny else 4, num_key_value_heads=4 if not tiny else 2,
                            intermediate_size=2048 if not tiny else 128, max_position_embeddings=2048,
                            tie_word_embeddings=True)
        model = T.LlamaForCausalLM(cfg)
    else:
        raise SystemExit(f"unknown family {family!r}")
    model.eval().save_pretrained(directory)
    build_tokenizer(400).save_pretrained(directory)
    return directory


def o_proj(root, family: str, layer: int):
    """The module whose input is the concatenation of the heads' outputs (z), per family."""
    if family == "gpt2":
        return root.transformer.h[layer].attn.c_proj
    if family == "pythia":
        return root.gpt_neox.layers[layer].attention.dense
    return root.model.layers[layer].self_attn.o_proj


def prompt_ids(tok, n: int) -> tuple[str, list[int]]:
    from bench_engine import WORDS

    text = ""
    for w in WORDS * 10:
        nxt = (text + " " + w) if text else w
        if len(tok.encode(nxt)) + 1 > n:
            break
        text = nxt
    while len(tok.encode(text)) + 1 < n:
        text += " the"
    return text, [tok.bos_token_id] + tok.encode(text)


def timed_together(fns: dict, repeats: int, warmup: bool = True) -> dict:
    """Median seconds of each callable, timed round-robin (one call of each per round), so a
    machine shared with other jobs slows all of them alike rather than whichever ran last."""
    if warmup:
        for fn in fns.values():
            fn()
    ts: dict = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            ts[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in ts.items()}


def bench(family: str, directory: Path, n_tokens: int, repeats: int) -> dict:
    from nnsight import LanguageModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(directory)
    hf = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    lm = LanguageModel(AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval(), tokenizer=tok)
    cfg = hf.config
    L, H = cfg.num_hidden_layers, cfg.num_attention_heads
    dh = cfg.hidden_size // H
    text, ids = prompt_ids(tok, n_tokens)
    m, engine_error = None, None
    try:
        from circuit_debugger.loading import load_model

        m = load_model(str(directory), name=family)
        m.max_tokens = m.n_ctx
        ids = m.tokenize(text)  # the engine's tokens (with or without BOS, as the model's config says)
    except Exception as e:  # e.g. a family the engine does not read yet: the HF/nnsight rows still run
        engine_error = f"failed: {type(e).__name__}: {str(e)[:300]}"
    toks = torch.tensor([ids])
    ta, tb = tok.encode(" Mary")[0], tok.encode(" John")[0]
    r = {"family": family, "params_M": sum(p.numel() for p in hf.parameters()) / 1e6, "tokens": len(ids)}
    for p in list(hf.parameters()) + list(lm.parameters()):
        p.requires_grad_(False)

    def hf_fwd():
        with torch.no_grad():
            return hf(toks).logits

    def hf_fwd_bwd():
        """Forward + backward to the activations (weights frozen): the floor for act x grad."""
        emb = hf.get_input_embeddings()(toks).detach().requires_grad_(True)
        out = hf(inputs_embeds=emb).logits
        (out[0, -1, ta] - out[0, -1, tb]).backward()

    base = hf_fwd()[0, -1]
    ld0 = float(base[ta] - base[tb])
    layer, head = L // 2, 1

    def nn_one():
        with torch.no_grad(), lm.trace(toks):
            o_proj(lm, family, layer).input[:, :, head * dh:(head + 1) * dh] = 0
            out = lm.lm_head.output.save()
        return float(out[0, -1, ta] - out[0, -1, tb])

    B = L * H + 1

    def nn_all():
        with torch.no_grad(), lm.trace(toks.repeat(B, 1)):
            for l in range(L):
                for h in range(H):
                    o_proj(lm, family, l).input[1 + l * H + h, :, h * dh:(h + 1) * dh] = 0
            out = lm.lm_head.output[:, -1].save()
        d = out[:, ta] - out[:, tb]
        return (d[0] - d[1:]).reshape(L, H)

    nn_one_ld = nn_one()
    nn_effects = nn_all()
    r["check nnsight batched vs its single"] = abs(float(nn_effects[layer, head]) - (ld0 - nn_one_ld))
    single = {"fwd": hf_fwd, "fwd_bwd": hf_fwd_bwd, "nn_one": nn_one}
    batched = {"nn_all": nn_all}
    if engine_error:
        r["engine"] = engine_error
    else:
        try:
            ours(m, family, text, ids, ta, tb, layer, head, r, nn_effects, nn_one_ld, single, batched)
        except Exception as e:  # say so, keep the HF/nnsight rows
            r["engine"] = f"failed: {type(e).__name__}: {str(e)[:300]}"
    for k, v in timed_together(single, repeats).items():
        r[k + "_ms"] = v * 1e3
    for k, v in timed_together(batched, max(1, repeats - 1), warmup=False).items():
        r[k + "_ms"] = v * 1e3
    return r


def ours(m, family, text, ids, ta, tb, layer, head, r, nn_effects, nn_one_ld, single, batched) -> None:
    """Load the model into the engine, check its answers against nnsight's, and register the
    engine's timed callables beside the HF/nnsight ones."""
    from bench_engine import fresh
    from circuit_debugger import attribution as A
    from circuit_debugger.engine import Debugger
    from circuit_debugger.interventions import Intervention, build_hooks
    from circuit_debugger.nodes import parse_node
    from circuit_debugger.partial_run import capture, exact_ablation_from_layers, rerun, start_layer
    from circuit_debugger.targets import LogitDiff

    dbg = Debugger([m])
    L, H = m.shape.n_layers, m.shape.n_heads

    def attribute():
        fresh(dbg)
        return dbg.attribute(family, text, " Mary", " John", top_k=100)

    iv = [{"node": f"L{layer}.H{head}", "op": "zero"}]

    def intervene():
        fresh(dbg)
        return dbg.intervene(family, text, iv, target=" Mary", distractor=" John")

    def intervene_cached_clean():
        clean = dbg._clean
        fresh(dbg)
        dbg._clean = clean
        return dbg.intervene(family, text, iv, target=" Mary", distractor=" John")

    # the re-run from the edited layer on cached block outputs (partial_run.py), alone: what
    # Debugger.intervene costs beyond its cached clean pass
    ivs = [Intervention.make(node=f"L{layer}.H{head}", op="zero")]
    _, blocks = capture(m, ids)
    k = start_layer(ivs, L)

    pos = len(ids) - 1

    def partial():  # intervene reads the logits at the question's position only
        return rerun(m, blocks, build_hooks(ivs, L, {}, autoencoders=m.autoencoders), k, logit_position=pos)[:, pos]

    nodes = [parse_node(f"L{l}.H{h}") for l in range(L) for h in range(H)]
    target = LogitDiff(m, len(ids) - 1, ta, tb)

    def all_heads():
        with torch.no_grad():
            clean = float(target.value({}, m.run(m.tokens_tensor(ids)))[0])
        return torch.tensor(A.exact_ablation(m, ids, target, [], {}, nodes, clean)).reshape(L, H)

    def all_heads_from_layers():
        clean_logits, cached = capture(m, ids)
        clean = float(target.value({}, clean_logits)[0])
        return torch.tensor(exact_ablation_from_layers(m, ids, target, nodes, clean, cached,
                                                       logit_position=target.position)).reshape(L, H)

    res = intervene()
    r["check one-head ablation, ours vs nnsight"] = abs(res["logit_diff"] - nn_one_ld)
    r["check all-head effects, ours vs nnsight (max)"] = float((all_heads() - nn_effects).abs().max())
    r["check all-head effects from layers vs nnsight (max)"] = float((all_heads_from_layers() - nn_effects).abs().max())
    r["check sum residual"] = abs(attribute()["sum_check"]["residual"])
    full = m.run(m.tokens_tensor(ids), build_hooks(ivs, L, {}, autoencoders=m.autoencoders))
    r["check partial vs full re-run"] = float((partial() - full[:, pos]).abs().max())
    single.update(attr=attribute, iv_fresh=intervene, iv_cached=intervene_cached_clean, iv_partial=partial)
    batched.update(all_heads=all_heads, all_heads_partial=all_heads_from_layers)


def report(r: dict) -> None:
    f = r["family"]
    print(f"\n== {f}: {r['params_M']:.0f} M parameters, {r['tokens']} tokens ==")
    print(f"  bare HF forward {r['fwd_ms']:.1f} ms, forward+backward to the activations {r['fwd_bwd_ms']:.1f} ms")
    print(f"  nnsight one-head ablation {r['nn_one_ms']:.1f} ms ({r['nn_one_ms'] / r['fwd_ms']:.2f}x bare fwd); "
          f"all heads batched {r['nn_all_ms']:.0f} ms")
    if "engine" in r:
        print(f"  engine: {r['engine']}")
        return
    rows = [("attribution, fresh / bare fwd+bwd", r["attr_ms"] / r["fwd_bwd_ms"], "<= 1.5"),
            ("one-head ablation, fresh / bare fwd", r["iv_fresh_ms"] / r["fwd_ms"], ""),
            ("one-head ablation, clean pass cached / bare fwd", r["iv_cached_ms"] / r["fwd_ms"], "<= 1.0"),
            ("one-head ablation, fresh / nnsight", r["iv_fresh_ms"] / r["nn_one_ms"], ""),
            ("one-head ablation, clean pass cached / nnsight", r["iv_cached_ms"] / r["nn_one_ms"], "<= 0.7"),
            ("all heads exact, full passes (exact_ablation) / nnsight batched", r["all_heads_ms"] / r["nn_all_ms"], "<= 0.7")]
    if "all_heads_partial_ms" in r:
        rows += [("all heads exact, from each layer (verify_top) / nnsight batched", r["all_heads_partial_ms"] / r["nn_all_ms"],
                  "<= 0.7")]
    if "iv_partial_ms" in r:
        rows += [("one-head ablation, partial re-run (cached) / bare fwd", r["iv_partial_ms"] / r["fwd_ms"], "<= 1.0"),
                 ("one-head ablation, partial re-run (cached) / nnsight", r["iv_partial_ms"] / r["nn_one_ms"], "<= 0.7")]
    for label, ratio, goal in rows:
        miss = " (missed)" if goal and ratio > float(goal.split()[-1]) else ""
        print(f"  {label:<52} {ratio:6.2f}x  {goal}{miss}")
    print(f"  engine ms: attribution {r['attr_ms']:.0f}, ablation fresh {r['iv_fresh_ms']:.0f}, cached "
          f"{r['iv_cached_ms']:.0f}, all heads {r['all_heads_ms']:.0f}"
          + (f", partial {r['iv_partial_ms']:.0f}" if "iv_partial_ms" in r else "")
          + (f", all heads from layers {r['all_heads_partial_ms']:.0f}" if "all_heads_partial_ms" in r else ""))
    for k, v in r.items():
        if k.startswith("check"):
            print(f"  {k}: {v:.2e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--families", default="gpt2,pythia,llama")
    ap.add_argument("--tiny", action="store_true", help="tiny widths: checks the script, measures nothing useful")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    import nnsight

    print(f"torch {torch.__version__}, nnsight {nnsight.__version__}, {a.threads} thread(s); medians of "
          f"{a.repeats} (batched rows: {max(1, a.repeats - 1)}); every engine call starts with all caches empty "
          "unless marked cached")
    for family in a.families.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            report(bench(family, build(family, Path(tmp), a.tiny), a.tokens, a.repeats))


if __name__ == "__main__":
    main()
