"""Debugger methods the web UI needs to tell the truth: what each model supports (so the UI
offers nothing that would fail), exact effects and integrated gradients beside the act×grad
estimate (see effects.py), the attention pattern under interventions, and generation with and
without interventions (see generation.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

from . import effects as E
from .cache import request_key
from .codec import HFCodec
from .errors import UserError
from .execution import RunRequest, execute
from .nodes import pattern_hook
from .targets import LogitDiff, check_position

MAX_EXACT_UNITS = 8192  # heads + neurons of one exact-effects request (each one batch copy)

DEFAULT_EXAMPLES = [
    {"prompt": "When Mary and John went to the store, John gave a drink to", "target": " Mary", "distractor": " John",
     "label": "indirect object (IOI)"},
    {"prompt": "The war lasted from the year 1732 to the year 17", "target": "50", "distractor": "30",
     "label": "greater-than"},
]


class UIMixin:
    # ------------------------------------------------------------------ capabilities
    def capabilities(self, model: str) -> dict:
        """What the UI may offer for this model: its own example questions, the ready-made prompt
        sets that tokenize for it, the bases, the graph, mean ablation and generation."""
        m = self.model(model)
        key = request_key("capabilities", m.name)
        hit = self._results.get(key)
        if hit is not None:
            return hit
        from .promptsets import BUILTINS, builtin

        sets = []
        for name in BUILTINS:  # a set applies when its prompts and answers are this model's tokens
            try:
                ps = builtin(name, m.tokenize, n=2, seed=0)
                for row in ps.rows:
                    m.codec.output_token(row.target)
                    if row.distractor:
                        m.codec.output_token(row.distractor)
                sets.append(name)
            except Exception:  # noqa: BLE001 — any failure means "not offered"; /api/models must not fail
                continue
        try:
            examples = self._examples(m)
        except Exception:  # noqa: BLE001 — a malformed examples.json: offer none rather than fail /api/models
            examples = []
        from .autoencoders.graph_dictionaries import graphable_mlp

        aes = m.autoencoders
        out = {
            "examples": examples,
            "prompt_sets": sets,
            "transcoders": bool(aes.mlp_layers()),  # per-layer transcoders, MLP-out SAEs or a CLT
            "saes": bool(aes.saes),
            # offered where every MLP has a dictionary that can be a graph's node (not an MLP-out SAE)
            "graph": all(graphable_mlp(m, l) is None for l in range(m.shape.n_layers)),
            "mean_ablation": bool(m.reference_prompts),
            "generation": isinstance(m.codec, HFCodec),
            "numerical_output": m.d_vocab_out == 1,
        }
        return self._results.put(key, out)

    def _examples(self, m) -> list[dict]:
        path = Path(m.source) / "examples.json" if m.source else None
        if path is not None and path.is_file():  # tracr testbeds: inputs and the program's outputs
            out = []
            for ex in json.loads(path.read_text())[:12]:
                if len(out) == 6:
                    break
                prompt = " ".join(str(x) for x in ex["input"])
                if m.d_vocab_out == 1:
                    target, distractor = m.codec.output_str(0), ""
                else:
                    target, label = ex["output"][-1], f"output {ex['output']}"
                    if target is None:  # the program defines no output there: ask about what the model says
                        target = self.outputs(m.name, prompt)["outputs"][-1]["token"]
                        label = f"output {ex['output']}; at the last position the model's own top output"
                    target = str(target)
                    if target not in m.codec.output_tokens:
                        continue
                    others = [t for t in m.codec.output_tokens if t != target]
                    distractor = others[0] if others else ""
                out.append({"prompt": prompt, "target": target, "distractor": distractor,
                            "label": label if m.d_vocab_out > 1 else f"output {ex['output']}"})
            return out
        good = []
        for ex in DEFAULT_EXAMPLES:
            try:
                m.tokenize(ex["prompt"])
                m.codec.output_token(ex["target"])
                m.codec.output_token(ex["distractor"])
                good.append(ex)
            except UserError:
                continue
        return good

    # ------------------------------------------------------------------ exact effects + IG
    def effects(self, model: str, prompt: str, target: Optional[str] = None, distractor: Optional[str] = None,
                position: Optional[int] = None, trace: Optional[dict] = None, *, interventions: Sequence = (),
                counterfactual_prompt: Optional[str] = None, reference_prompts: Optional[Sequence[str]] = None,
                ablation: str = "zero", neurons: bool = False, ig_steps: int = 16) -> dict:
        """Every head's (and optionally neuron's) estimate, exact ablation effect and IG."""
        import time

        m = self.model(model)
        ids = m.tokenize(prompt)
        if ablation not in ("zero", "mean"):
            raise UserError("ablation must be 'zero' or 'mean'")
        if not 0 <= ig_steps <= 64:
            raise UserError("ig_steps must be between 0 and 64 (0: no integrated gradients)")
        if (target is None) == (trace is None):
            raise UserError("give a target token (a question) or a trace target, not both")
        if trace is not None:
            build, tkey = self._trace_target(m, ids, dict(trace)), ("trace", request_key(trace))
        else:
            pos = check_position(position, len(ids))
            t = m.codec.output_token(target, "target")
            d = None if distractor in (None, "") else m.codec.output_token(distractor, "distractor")
            if d == t:
                raise UserError("target and distractor are the same token")
            build, tkey = (lambda: LogitDiff(m, pos, t, d)), ("logit", pos, t, d)
        units = m.shape.n_layers * (m.shape.n_heads + (m.shape.d_mlp if neurons else 0))
        if units > MAX_EXACT_UNITS:  # one batch copy per unit: bounded, so one request cannot occupy the server
            raise UserError(f"exact effects of {units} units (heads{' and neurons' if neurons else ''}) exceed this "
                            f"server's {MAX_EXACT_UNITS}; ask for heads only")
        ivs = self._interventions(m, ids, interventions, counterfactual_prompt, reference_prompts)
        means = None
        if ablation == "mean":
            refs = reference_prompts or m.reference_prompts
            if not refs:
                raise UserError(f"model {m.name!r} has no reference corpus for mean-ablation; give reference_prompts "
                                "or use zero-ablation")
            means = self.mean_activations(m, refs)
        key = request_key("effects", m.name, ids, tkey, [str(i) + str(i.vector) for i in ivs], counterfactual_prompt,
                          reference_prompts, ablation, neurons, ig_steps)
        hit = self._results.get(key)
        if hit is not None:
            return hit
        t0 = time.perf_counter()
        choice = self._choice(m, ivs, "neurons", "heads")
        src = self._sources(m, ids, ivs, counterfactual_prompt, reference_prompts)
        r = E.compute(m, ids, build(), ivs, src, choice, E.unit_groups(m, neurons), ablation, means, ig_steps)
        scale = max([abs(x["exact"]) for x in r["rows"]] + [abs(r["value"]), 1e-6])
        floor = 0.02 * scale  # differences this small are noise next to the largest effect, never flagged
        for row in r["rows"]:
            row["flag"] = E.disagreement(row["estimate"], row["exact"], floor)
            row["ig_flag"] = E.disagreement(row["ig"], row["exact"], floor)
        heads = [x for x in r["rows"] if x["kind"] == "head"]
        out = {"model": m.name, "ablation": ablation, "ig_steps": ig_steps, "value": r["value"],
               "rows": r["rows"], "groups": r["groups"], "flag_floor": floor,
               "spearman_heads": {"estimate": E.spearman([x["estimate"] for x in heads], [x["exact"] for x in heads]),
                                  "ig": E.spearman([x["ig"] for x in heads], [x["exact"] for x in heads])
                                  if ig_steps else None},
               "sign_disagreements": {"estimate": sum(x["flag"] == "sign" for x in r["rows"]),
                                      "ig": sum(x["ig_flag"] == "sign" for x in r["rows"])},
               "elapsed_ms": 0.0}
        out["elapsed_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        return self._results.put(key, out)

    # ------------------------------------------------------------------ attention under interventions
    def attention_after(self, model: str, prompt: str, layer: int, head: Optional[int] = None, *,
                        interventions: Sequence = (), counterfactual_prompt: Optional[str] = None,
                        reference_prompts: Optional[Sequence[str]] = None) -> dict:
        """The attention pattern of a layer (or one head) with the interventions applied upstream."""
        m = self.model(model)
        ids = m.tokenize(prompt)
        if not 0 <= layer < m.shape.n_layers:
            raise UserError(f"layer {layer} out of range (model has layers 0..{m.shape.n_layers - 1})")
        if head is not None and not 0 <= head < m.shape.n_heads:
            raise UserError(f"head {head} out of range (layer has heads 0..{m.shape.n_heads - 1})")
        ivs = self._interventions(m, ids, interventions, counterfactual_prompt, reference_prompts)
        src = self._sources(m, ids, ivs, counterfactual_prompt, reference_prompts)
        choice = self._choice(m, ivs, "neurons", "heads")
        cap = execute(m, ids, RunRequest(ivs, src, [pattern_hook(layer)], splice=choice))
        pat = cap.acts[pattern_hook(layer)][0].detach()
        heads = range(m.shape.n_heads) if head is None else [head]
        return {"model": m.name, "tokens": m.codec.token_strs(ids), "layer": layer,
                "interventions": [str(i) for i in ivs],
                "heads": {f"L{layer}.H{h}": pat[h].tolist() for h in heads}}

    # ------------------------------------------------------------------ one node's numbers
    def node_values(self, model: str, prompt: str, node: str, target: Optional[str] = None,
                    distractor: Optional[str] = None, trace: Optional[dict] = None, **options) -> dict:
        """One node's row (current and baseline values) for a question, whatever the table shows:
        the full table is computed (cached) and only this row returned. The basis follows the
        node (a latent switches its autoencoder in)."""
        from .nodes import HEAD, NEURON, RESID_SAE, RESID_SAE_ERR, SAE, SAE_ERR, TRANSCODER, TRANSCODER_ERR, \
            parse_node, validate

        m = self.model(model)
        n = validate(parse_node(node), m.shape, len(m.tokenize(prompt)), latents=m.autoencoders.sizes())
        if n.kind in (TRANSCODER, TRANSCODER_ERR):
            options["mlp_basis"] = "transcoders"
        if n.kind in (SAE, SAE_ERR):
            options["attn_basis"] = "saes"
        if n.kind == NEURON:  # a neuron selected while the table shows latents keeps its numbers
            options["mlp_basis"] = "neurons"
        if n.kind == HEAD:
            options["attn_basis"] = "heads"
        if n.kind in (RESID_SAE, RESID_SAE_ERR):  # a residual latent needs the residual SAEs spliced
            options["resid_basis"] = "saes"
        options["granularity"] = "component" if n.position is None else "position"
        options["top_k"] = None
        if (target is None) == (trace is None):
            raise UserError("give a target token (a question) or a trace target, not both")
        r = self.trace(model, prompt, trace, **options) if trace is not None else \
            self.attribute(model, prompt, target, distractor, **options)
        row = next((x for x in r["nodes"] if x["id"] == str(n)), None)
        if row is None:
            raise UserError(f"node {n} is not among this question's nodes (a residual stream or a node after the target)")
        return {"model": r["model"], "node": str(n), "row": row, "position": r["position"],
                "mlp_basis": r["mlp_basis"], "attn_basis": r["attn_basis"], "resid_basis": r["resid_basis"]}

    # ------------------------------------------------------------------ readable byte-level pieces
    @staticmethod
    def readable_tokens(m, ids: Sequence[int]) -> Optional[list[str]]:
        """Byte-level BPE splits a character into tokens that decode to '�' alone. Each such
        token becomes 'é[1/2]': the character its run of tokens forms and its part of it
        (undecodable runs: their bytes in hex, '⟨c3⟩'). None when no token needs it."""
        if not isinstance(m.codec, HFCodec):
            return None
        strs = m.codec.token_strs(ids)
        if not any("\ufffd" in s for s in strs):
            return None
        from transformers.convert_slow_tokenizer import bytes_to_unicode

        back = {c: b for b, c in bytes_to_unicode().items()}
        pieces = m.codec.tokenizer.convert_ids_to_tokens(list(ids))
        raw = [bytes(back[c] for c in p) if p and all(c in back for c in p) else None for p in pieces]
        out = list(strs)
        i = 0
        while i < len(ids):
            if "\ufffd" not in strs[i] or raw[i] is None:
                i += 1
                continue
            j, text = i, None
            while j < len(ids) and raw[j] is not None and j - i < 8:  # a run whose bytes decode cleanly
                try:
                    text = b"".join(raw[i:j + 1]).decode("utf-8")
                    break
                except UnicodeDecodeError:
                    j += 1
            if text is None:
                out[i] = "⟨" + raw[i].hex(" ") + "⟩"
                i += 1
                continue
            n = j - i + 1
            for k in range(i, j + 1):
                out[k] = f"{text.strip() or text}[{k - i + 1}/{n}]" if n > 1 else text
            i = j + 1
        return out

    def token_display(self, model: str, ids: Sequence[int]) -> dict:
        """Each token id on its own, readable ('⟨c3⟩' for a byte that is part of a character)."""
        m = self.model(model)
        vocab = int(m.d_vocab_out)
        bad = [i for i in ids if not 0 <= int(i) < vocab]
        if bad:
            raise UserError(f"token ids {bad[:5]} out of range (the model's outputs are 0..{vocab - 1})")
        out = []
        for i in ids:
            shown = self.readable_tokens(m, [int(i)])
            out.append(shown[0] if shown else m.codec.output_str(int(i)))
        return {"model": m.name, "ids": [int(i) for i in ids], "display": out}
