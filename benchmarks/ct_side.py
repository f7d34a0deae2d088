"""The circuit-tracer side of `bench_graph_vs_circuit_tracer.py`. Runs in its own venv
(`.ct-venv`, see benchmarks/requirements-circuit-tracer.txt): circuit-tracer 0.5.0 pins
transformers <= 4.57.3. Imports nothing from circuit_debugger.

Loads the default model's GPT-2 weights into circuit-tracer's TransformerLens replacement model
and our default transcoders into its SingleLayerTranscoder (TopK, k from their cfg.json; its
W_enc is [d_sae, d_model]), then times `attribute` on the given token ids with one custom target
(the logit-difference direction) at each batch size, and prunes at 0.8 / 0.98. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from safetensors.torch import load_file


def load(model_dir: Path, tc_dir: Path):
    from transformers import GPT2LMHeadModel
    from transformer_lens import HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights
    from circuit_tracer.replacement_model.replacement_model_transformerlens import TransformerLensReplacementModel
    from circuit_tracer.transcoder.activation_functions import TopK
    from circuit_tracer.transcoder.single_layer_transcoder import SingleLayerTranscoder, TranscoderSet

    hf = GPT2LMHeadModel.from_pretrained(model_dir).eval()
    c = hf.config
    cfg = HookedTransformerConfig(
        n_layers=c.n_layer, d_model=c.n_embd, n_ctx=c.n_positions, d_head=c.n_embd // c.n_head, n_heads=c.n_head,
        d_mlp=c.n_inner or 4 * c.n_embd, d_vocab=c.vocab_size, act_fn=c.activation_function, normalization_type="LN",
        eps=c.layer_norm_epsilon, model_name="default", original_architecture="GPT2LMHeadModel",
        positional_embedding_type="standard", default_prepend_bos=False, device="cpu", dtype=torch.float32)
    tcs = {}
    for l in range(c.n_layer):
        folder = tc_dir / f"tc{l}"
        meta = json.loads((folder / "cfg.json").read_text())
        w = load_file(str(next(folder.glob("*.safetensors"))))
        act = TopK(int(meta["k"])) if meta.get("architecture") == "topk" else torch.nn.functional.relu
        t = SingleLayerTranscoder(c.n_embd, w["W_enc"].shape[1], act, l, device=torch.device("cpu"), dtype=torch.float32)
        t.load_state_dict({"W_enc": w["W_enc"].T.contiguous(), "W_dec": w["W_dec"], "b_enc": w["b_enc"],
                           "b_dec": w["b_dec"]})
        tcs[l] = t
    ts = TranscoderSet(tcs, feature_input_hook="ln2.hook_normalized", feature_output_hook="hook_mlp_out",
                       scan="circuit-debugger-default")
    from transformers import PreTrainedTokenizerFast

    model = TransformerLensReplacementModel.from_config(cfg, ts, tokenizer=PreTrainedTokenizerFast(tokenizer_file=str(model_dir / "tokenizer.json")))
    sd = convert_gpt2_weights(hf, cfg)
    own = model.state_dict()
    mapped = {}
    for k, v in sd.items():
        k2 = k.replace(".mlp.", ".mlp.old_mlp.").replace("unembed.", "unembed.old_unembed.")
        mapped[k2 if k2 in own else k] = v
    missing = [k for k in own if k not in mapped and not k.startswith("transcoders.") and "IGNORE" not in k
               and not k.endswith(("mask",))]
    model.load_state_dict(mapped, strict=False)
    return model, missing


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--tc-dir", required=True)
    ap.add_argument("--ids", required=True, help="JSON list of token ids")
    ap.add_argument("--target", type=int, required=True)
    ap.add_argument("--distractor", type=int, required=True)
    ap.add_argument("--batch-sizes", default="8,16,32,64,128,256,512")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from circuit_tracer.attribution.attribute import attribute
    from circuit_tracer.attribution.targets import CustomTarget
    from circuit_tracer.graph import prune_graph

    model, missing = load(Path(a.model_dir), Path(a.tc_dir))
    ids = torch.tensor(json.loads(a.ids))
    W_U = model.unembed.W_U if hasattr(model.unembed, "W_U") else model.unembed.old_unembed.W_U
    u = (W_U[:, a.target] - W_U[:, a.distractor]).detach()
    target = [CustomTarget("diff", 1.0, u)]
    out = {"missing_weights": missing, "times_ms": {}}
    for bs in [int(x) for x in a.batch_sizes.split(",")]:
        attribute(ids, model, attribution_targets=target, batch_size=bs)  # warm-up
        ts = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            g = attribute(ids, model, attribution_targets=target, batch_size=bs)
            ts.append(time.perf_counter() - t0)
        out["times_ms"][bs] = statistics.median(ts) * 1000
    nodes, edges, _ = prune_graph(g, 0.8, 0.98)
    n_feat = len(g.selected_features)
    out["pruned"] = {"features": int(nodes[:n_feat].sum()), "edges": int(edges.sum()),
                     "active_features": int(len(g.active_features))}
    logits = model(ids[None])[0, -1]
    out["logit_diff"] = float(logits[a.target] - logits[a.distractor])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
