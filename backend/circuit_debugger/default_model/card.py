"""Write an embedded model's card (README.md beside the weights) from measured metrics: the
default GPT-2 (corpus v1) or the Llama-family model (corpus v2)."""

from __future__ import annotations

from pathlib import Path

EVAL = "python -m circuit_debugger.default_model.evaluate --write   (run in backend/)"
TRAIN = ("for s in 14000 18000 24000; do python -m circuit_debugger.default_model.train --steps $s; done   "
         "(run in backend/; each run resumes the previous one from .cache/default-train, with its cosine schedule recomputed for the new total)")


LLAMA_EVAL = "python -m circuit_debugger.default_model.evaluate --model llama --write   (run in backend/)"


def _llama_intro(m: dict) -> str:
    t = m["training"]
    return f"""# The Llama-family model (`llama`)

A 3-layer Llama (`LlamaForCausalLM`: RMSNorm, rotary positions, gated SiLU MLPs, grouped-query
attention with 4 query heads sharing 2 key/value heads; d_model 128, heads of 32, d_mlp 384,
context 64, tied embeddings; {m['parameters']:,} parameters) with a byte-level BPE tokenizer of
{m['vocab_size']} tokens trained the same way as the default model's, on corpus v2 (every name is
one token; numbers split into digit pairs; centuries 10-20 are single tokens). Trained from
scratch, deterministically (seed {t['seed']}), by the same script as the default model on the wider
corpus v2 (`default_model/corpus_v2.py`): IOI with 26 intros (conjoined names or not, other clause
orders) × 25 actions, 25 objects, 25 places, a quarter of task examples after a sentence of filler;
greater-than in eight phrasings over centuries 10-20; 40% of IOI and greater-than examples with
made-up verbs and prepositions; induction (repeated random tokens and words); natural-text-like
filler (questions, dialogue, pronouns). Loss weights as for the default model.

Training cost: {t['steps']} steps of batch {t['batch']} (lr {t['lr']}), **{t['cpu_minutes']} CPU minutes**
(process CPU time on {t['threads']} thread, measured on a machine shared with other jobs; the run took
{t.get('wall_minutes', '?')} minutes of wall-clock time there).
Reproduce: `python -m circuit_debugger.default_model.train --arch llama --steps {t['steps']}   (run in backend/; resumable
from .cache/llama-train)`{(" — " + t["schedule"]) if t.get("schedule") else ""}, then `{LLAMA_EVAL}`, which measures everything below and rewrites
this file and `metrics.json`. Served as model `llama` (`load_model("llama")`).
"""


def _heldout_v2(m: dict) -> str:
    h = m.get("heldout_v2")
    if not h:
        return ""
    i, g = h["ioi"], h["greater_than"]
    trained = "corpus v2" if m.get("training", {}).get("corpus") == "v2" else "corpus v1 (which has none of them either)"
    return f"""## Held-out template families (generalisation)

Corpus v2 defines template families that no training text uses: IOI with {h['ioi_templates']} intro × action
templates whose intros and verbs ("walked", "camped", "drove", "threw", "lent", "presented",
"forwarded", "slipped", "carried over" ...) appear in no training example, and greater-than in {len(h['gt_frames'])} frames
with verbs and frames of their own ({'; '.join('"' + f + '"' for f in h['gt_frames'])}). This model was trained on {trained}.

| measure | value | goal | |
|---|---|---|---|
| IOI, held-out families: top-1 accuracy (the IO is the argmax) | {i['accuracy']:.3f} (n={i['n']}) | ≥ 0.95 | {_ok(i['accuracy'], 0.95)} |
| IOI, held-out families: logit(IO) > logit(S) | {i['prefers_io_over_s']:.3f} (mean logit diff {i['mean_logit_diff']:.2f}) | (reported) | |
| greater-than, held-out frames: accuracy (p(later year) > p(earlier or same)) | {g['accuracy']:.3f} (n={g['n']}, centuries {g['centuries'][0]}-{g['centuries'][-1]}) | ≥ 0.9 | {_ok(g['accuracy'], 0.9)} |
| greater-than, held-out frames: mean p(>) − p(≤) | {g['mean_prob_diff']:.3f} | (reported) | |
"""


def _ok(value: float, bar: float, higher: bool = True) -> str:
    return "meets" if (value >= bar if higher else value <= bar) else "**misses**"


def _role(att: dict) -> str:
    best = max(att, key=att.get)
    parts = ", ".join(f"{k} {v:.2f}" for k, v in sorted(att.items(), key=lambda kv: -kv[1]))
    return f"attends from the final token mostly to {best} ({parts})"


def _reading(mech: dict) -> str:
    """Plain statements read off the measured numbers (no hand-written claims)."""
    lines = ["What the numbers say (generated from them):", ""]
    for h in mech["top_heads"][:3]:
        k = h["node"]
        att = mech["attention_from_end"].get(k, {})
        split = mech["direct_effect_on_io_and_s"].get(k, {})
        where = max(att, key=att.get) if att else "?"
        direct, total = h["mean_direct_effect"], h["mean_total_effect"]
        mode = "mostly directly (its direct effect is at least half its total)" if abs(direct) >= 0.5 * abs(total) \
            else "mostly through later layers (direct effect small beside its total)"
        io, s_ = split.get("IO", 0.0), split.get("S", 0.0)
        lines.append(f"- `{k}` attends from the final token to {where} ({att.get(where, 0):.2f}) and acts {mode}; "
                     f"its direct effect on logit(IO) − mean logit is {io:+.2f} and on logit(S) − mean logit {s_:+.2f}.")
    mlp = sum(v["mean_direct_effect"] for k, v in mech["sublayers"].items() if k.endswith("MLP"))
    attn = sum(v["mean_direct_effect"] for k, v in mech["sublayers"].items() if k.endswith("ATTN"))
    lines.append(f"- Direct effects on the logit difference: attention sublayers {attn:+.2f} in all, MLP sublayers "
                 f"{mlp:+.2f} (mean logit diff {mech['mean_logit_diff']:.2f}; embeddings and biases make up the rest).")
    lines.append("- Compare with GPT-2 small's circuit (duplicate-token and S-inhibition heads, then name movers that "
                 "copy IO): a head that attends to S2 and lowers logit(S) is doing S-suppression directly, not "
                 "moving the IO name; whether the model has name movers shows as a head attending to IO with a "
                 "positive direct effect on logit(IO).")
    return "\n".join(lines)


def _circuit(c, corpus: str = "v1") -> str:
    if not c:
        return ""
    kind = ("held-out templates" if corpus == "v1" else
            "corpus v1's held-out intro × action combinations, which corpus v2 trains on")
    e = c["evaluation"]
    f, comp = e["faithfulness"], e["completeness"]
    added = [next(h for h in s["heads"] if h not in (c["greedy_path"][i - 1]["heads"] if i else []))
             for i, s in enumerate(c["greedy_path"])]
    steps = "; ".join(f"+`{h}` → {s['faithfulness']:.2f}" for h, s in zip(added, c["greedy_path"]))
    mini = "\n".join(f"| `{x['node']}` | {x['score']:.2f} | {x['relative']:.2f} | {', '.join('`' + k + '`' for k in x['K']) or '∅'} |"
                     for x in e["minimality"])
    return f"""## The IOI circuit over a prompt distribution

Found and judged by the debugger's circuit evaluation (`circuits.py`; the UI's dataset view)
on {e['n_prompts']} prompts ({c['prompt_set']}: {kind}, ABBA and BABA), metric the mean
logit difference IO − S, everything outside the circuit mean-ablated per position over the
ABC counterfactuals (S2 replaced by a third name); the universe is the {e['universe'][0]}s (MLPs
always kept). Heads were added greedily by faithfulness until it reached 0.9: {steps}.

Circuit: {', '.join('`' + x + '`' for x in c['nodes'])}.

| criterion | value |
|---|---|
| faithfulness F(C) / F(M) | {f['fraction']:.3f} ({f['circuit']:.2f} of {f['model']:.2f}; F(∅) = {f['empty']:.2f}, normalized {f['normalized']:.3f}) |
| incompleteness, worst found max_K abs(F(C∖K) − F(M∖K)) | {comp['worst_incompleteness']:.2f} ({comp['relative']:.3f} of F(M)) at K = {{{', '.join(comp['worst_K'])}}}, over {comp['n_subsets_tried']} subsets |
| cost | {e['cost']['configs']} ablation sets in {e['cost']['forwards']} batched forwards, {e['cost']['elapsed_ms'] / 1000:.1f} s |

Minimality (per node v, the best K found; relative to F(C)):

| node | abs(F(C∖(K∪v)) − F(C∖K)) | relative | K |
|---|---|---|---|
{mini}
"""


def _gpt2_intro(m: dict) -> str:
    return f"""# The default model

A 3-layer GPT-2 (`GPT2LMHeadModel`: LayerNorm, GELU MLPs, learned positions; d_model 128,
4 heads of 32, d_mlp 512, context 64; {m['parameters']:,} parameters) with a byte-level BPE
tokenizer of {m['vocab_size']} tokens (any text tokenizes; every name is one token; numbers split
into digit pairs, so " 1732" is " 17" + "32"). Trained from scratch, deterministically (seed 0),
on a generated corpus: IOI (ABBA and BABA orders, 75 intro × action templates, 30 names,
15 places and objects), greater-than ("The war lasted from the year 1732 to the year 17"),
induction (repeated uniformly random tokens and repeated word sequences) and template-built
English filler. No downloaded data. Loss on answer tokens is weighted ×10 and on repeated
halves ×5 (without it IOI and induction did not emerge in a CPU budget); 20% of sequences are
repeated uniformly random tokens.

Reproduce: `{TRAIN}` (about 32 minutes on one CPU thread in all), then `{EVAL}`,
which measures everything below and rewrites this file and `metrics.json`.
Trained on corpus v1 (`default_model/corpus.py`); it has not been retrained on the wider corpus v2
(`train --arch gpt2 --corpus v2` would do it).

"""


def write_card(directory: Path, m: dict) -> None:
    ioi, tpl, unseen = m["ioi_heldout_pairs"], m["ioi_heldout_templates"], m["ioi_unseen_words_templates"]
    gt, ind, fil, mech = m["greater_than"], m["induction_random_tokens"], m["filler_heldout"], m["mechanisms_ioi"]
    heads = "\n".join(
        f"| `{h['node']}` | {h['mean_total_effect']:+.2f} | {h['mean_direct_effect']:+.2f} | "
        f"{_role(mech['attention_from_end'][h['node']]) if h['node'] in mech['attention_from_end'] else ''} |"
        for h in mech["top_heads"])
    neurons = "\n".join(f"| `{h['node']}` | {h['mean_total_effect']:+.2f} | {h['mean_direct_effect']:+.2f} |"
                        for h in mech["top_neurons"])
    subs = "\n".join(f"| `{k}` | {v['mean_total_effect']:+.2f} | {v['mean_direct_effect']:+.2f} |"
                     for k, v in sorted(mech["sublayers"].items()))
    reading = _reading(mech)
    corpus = m.get("training", {}).get("corpus", "v1")
    text = (_llama_intro(m) if m.get("training", {}).get("arch") == "llama" else _gpt2_intro(m)) + f"""
## Quality bars

| measure | value | bar | |
|---|---|---|---|
| IOI, held-out name pairs: top-1 accuracy | {ioi['accuracy']:.3f} (n={ioi['n']}) | ≥ 0.95 | {_ok(ioi['accuracy'], 0.95)} |
| IOI, held-out name pairs: mean logit diff (IO − S) | {ioi['mean_logit_diff']:.2f} | ≥ 3 | {_ok(ioi['mean_logit_diff'], 3)} |
| IOI, {"held-out templates" if corpus == "v1" else "corpus v1's held-out combinations (trained in v2)"}: top-1 accuracy | {tpl['accuracy']:.3f} (n={tpl['n']}) | ≥ 0.80 | {_ok(tpl['accuracy'], 0.8)} |
| IOI, templates with an unseen intro and verb: top-1 accuracy | {unseen['accuracy']:.3f} | (reported) | |
| greater-than: mean p(year > start) − p(year ≤ start) | {gt['mean_prob_diff']:.3f} (n={gt['n']}) | ≥ 0.6 | {_ok(gt['mean_prob_diff'], 0.6)} |
| induction, repeated random tokens: 2nd-half / 1st-half loss | {ind['ratio']:.3f} ({ind['second_half_loss']:.2f} / {ind['first_half_loss']:.2f}) | ≤ 0.25 | {_ok(ind['ratio'], 0.25, False)} |
| held-out filler loss (nats/token, corpus {corpus} filler) | {fil['loss']:.3f} ({fil['tokens']} tokens) | (reported) | |

Held-out name pairs: 20% of unordered name pairs never appear together in IOI training (each
name does appear, with other names). Held-out templates: five intro × action combinations
of corpus v1 never seen in v1 training (their parts are). The "unseen intro and verb" templates use an intro
and verbs ("walked … and", "threw", "lent") that no IOI training example has (in v1 or v2).

{_heldout_v2(m)}
## IOI mechanism, as found by the debugger

Mean over {mech['n_prompts']} held-out-pair IOI prompts of each node's act×grad total effect and its
direct effect on logit(IO) − logit(S); mean logit diff {mech['mean_logit_diff']:.2f}. Attention
weights are means from the final token to the first position (BOS), IO, S1 and S2.

| head | total effect | direct effect | role |
|---|---|---|---|
{heads}

| neuron | total effect | direct effect |
|---|---|---|
{neurons}

| sublayer / embedding | total effect | direct effect |
|---|---|---|
{subs}

Mean-ablating the named nodes ({', '.join('`' + x + '`' for x in mech['mean_ablated_nodes'])}) over the
reference corpus changes the mean logit diff from {mech['mean_logit_diff']:.2f} to
{mech['mean_logit_diff_with_nodes_mean_ablated']:.2f}: they carry {100 * mech['fraction_of_logit_diff_removed']:.0f}% of it.

{reading}

{_circuit(m.get("ioi_circuit"), corpus)}

## Files

`config.json`, `model.safetensors`, `tokenizer.json` (a standard HuggingFace directory),{" `training.json` (how it was trained)," if "training" in m and corpus != "v1" else ""}
`reference_prompts.json` (64 held-out corpus prompts: the reference set for mean ablation),
`metrics.json` (everything above, machine-readable).
"""
    (directory / "README.md").write_text(text)
