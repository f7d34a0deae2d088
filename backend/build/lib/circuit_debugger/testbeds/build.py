"""Compile RASP programs into ground-truth testbeds the engine loads like any model.

    python -m circuit_debugger.testbeds.build [--only NAME ...] [--out DIR]

Needs the optional `tracr` extra (tracr-pypi, jax, dm-haiku). For each program it re-runs
tracr's compiler passes (keeping the graph and craft model), converts the weights to a
TransformerLens-native checkpoint (unembedding = tracr's projection onto the output space),
checks the converted model against tracr's own forward on every example, and writes
config.json, model.safetensors, vocab.json, ground_truth.json and examples.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "models"
BOS, PAD = "compiler_bos", "compiler_pad"
KINDS = {"TokensType": "tokens", "IndicesType": "indices", "Map": "map", "SequenceMap": "sequencemap",
         "LinearSequenceMap": "sequencemap", "Select": "select", "Aggregate": "aggregate",
         "SelectorWidth": "selectorwidth", "Full": "full", "ConstantSOp": "constant",
         "SelectorAnd": "select", "SelectorOr": "select", "SelectorNot": "select", "NumericalMLP": "map",
         "CategoricalMLP": "map", "LengthType": "length"}


def compile_program(spec):
    from tracr.compiler import (basis_inference, craft_graph_to_model, craft_model_to_transformer,
                                expr_to_craft_graph, rasp_to_graph, validating)
    from tracr.craft import bases
    from tracr.rasp import rasp

    rasp.RASPExpr._ids = itertools.count(1)  # deterministic labels on every build
    program = spec.make()
    bad = validating.static_validate(program)
    if bad:
        raise NotImplementedError("; ".join(f"{e.expr.name}: {e.reason}" for e in bad))
    extracted = rasp_to_graph.extract_rasp_graph(program)
    graph, sources, sink = extracted.graph, extracted.sources, extracted.sink
    basis_inference.infer_bases(graph, sink, spec.vocab, spec.max_seq_len)
    expr_to_craft_graph.add_craft_components_to_rasp_graph(
        graph, bos_dir=bases.BasisDirection(rasp.tokens.label, BOS), mlp_exactness=1000)
    craft_model = craft_graph_to_model.craft_graph_to_model(graph, sources)
    assembled = craft_model_to_transformer.craft_model_to_transformer(
        craft_model=craft_model, graph=graph, sink=sink, max_seq_len=spec.max_seq_len,
        compiler_bos=BOS, compiler_pad=PAD, causal=spec.causal)
    return program, graph, sink, craft_model, assembled


def to_tl(assembled, sink, spec):
    """TransformerLens-native config and state dict (float32)."""
    import einops
    from tracr.compiler import nodes
    from tracr.craft import bases

    p = {k: {n: np.asarray(v, dtype=np.float32) for n, v in d.items()} for k, d in assembled.params.items()}
    mc = assembled.model_config
    H, dh = mc.num_heads, mc.key_size
    W_E = p["token_embed"]["embeddings"]
    W_pos = p["pos_embed"]["embeddings"]
    D = W_E.shape[1]
    sd, d_mlp = {"embed.W_E": W_E, "pos_embed.W_pos": W_pos}, mc.mlp_hidden_size
    for l in range(mc.num_layers):
        a, m = f"transformer/layer_{l}/attn", f"transformer/layer_{l}/mlp"
        for tl, tr in (("Q", "query"), ("K", "key"), ("V", "value")):
            sd[f"blocks.{l}.attn.W_{tl}"] = einops.rearrange(p[f"{a}/{tr}"]["w"], "d (h e) -> h d e", h=H)
            sd[f"blocks.{l}.attn.b_{tl}"] = einops.rearrange(p[f"{a}/{tr}"]["b"], "(h e) -> h e", h=H)
        sd[f"blocks.{l}.attn.W_O"] = einops.rearrange(p[f"{a}/linear"]["w"], "(h e) d -> h e d", h=H)
        sd[f"blocks.{l}.attn.b_O"] = p[f"{a}/linear"]["b"]
        sd[f"blocks.{l}.mlp.W_in"], sd[f"blocks.{l}.mlp.b_in"] = p[f"{m}/linear_1"]["w"], p[f"{m}/linear_1"]["b"]
        sd[f"blocks.{l}.mlp.W_out"], sd[f"blocks.{l}.mlp.b_out"] = p[f"{m}/linear_2"]["w"], p[f"{m}/linear_2"]["b"]
    out_basis = bases.VectorSpaceWithBasis(sink[nodes.OUTPUT_BASIS]).basis
    labels = assembled.residual_labels
    W_U = np.zeros((D, len(out_basis)), dtype=np.float32)
    for j, bd in enumerate(out_basis):
        W_U[labels.index(str(bd)), j] = 1.0
    sd["unembed.W_U"], sd["unembed.b_U"] = W_U, np.zeros(len(out_basis), dtype=np.float32)
    cfg = dict(n_layers=mc.num_layers, d_model=D, n_ctx=spec.max_seq_len + 1, d_head=dh, n_heads=H, d_mlp=d_mlp,
               d_vocab=W_E.shape[0], d_vocab_out=len(out_basis), act_fn="relu", normalization_type=None,
               attention_dir="causal" if spec.causal else "bidirectional", positional_embedding_type="standard")
    return cfg, sd, out_basis


def ground_truth(program, graph, sink, craft_model, assembled, sd, spec) -> dict:
    from tracr.compiler import assemble, nodes
    from tracr.craft import transformers
    from tracr.rasp import rasp

    _, module_names = assemble._get_model_config_and_module_names(craft_model)
    slots = []  # (layer, 'attn'|'mlp', block)
    for name, block in zip(module_names, craft_model.blocks):
        slots.append((int(name.split("_")[1].split("/")[0]), name.rsplit("/", 1)[1], block))

    def head_components(block):
        out = []
        for head in block.as_multi().heads():
            for layer, kind, b in slots:
                if kind == "attn":
                    for h, other in enumerate(b.as_multi().heads()):
                        if other is head:
                            out.append({"layer": layer, "type": "head", "head": h})
        return out

    def mlp_components(block):
        hidden = set(block.fst.output_space.basis)
        out = []
        for layer, kind, b in slots:
            if kind == "mlp":
                neurons = [i for i, bd in enumerate(b.fst.output_space.basis) if bd in hidden]
                if neurons:
                    out.append({"layer": layer, "type": "mlp", "neurons": neurons})
        return out

    def components(block):
        if block is None:
            return []
        if isinstance(block, transformers.SeriesWithResiduals):
            return [c for sub in block.blocks for c in components(sub)]
        if isinstance(block, transformers.MLP):
            return mlp_components(block)
        return head_components(block)

    ops = {}
    for label in graph.nodes:
        node = graph.nodes[label]
        expr = node[nodes.EXPR]
        kind = KINDS.get(type(expr).__name__, type(expr).__name__.lower())
        comps = components(node.get(nodes.MODEL_BLOCK))
        if label == rasp.tokens.label:
            comps = [{"type": "embed"}]
        elif label == rasp.indices.label:
            comps = [{"type": "pos_embed"}]
        basis = node.get(nodes.OUTPUT_BASIS)
        ops[label] = {"name": expr.name, "kind": kind,
                      "children": [c.label for c in expr.children],
                      "writes": [str(b) for b in basis] if basis else [],
                      "encoding": str(rasp.get_encoding(expr)).split(".")[-1].lower() if isinstance(expr, rasp.SOp) else None,
                      "components": comps}
    # a Select is computed by the QK circuits of the heads of the Aggregates / SelectorWidths that use it
    for label, op in ops.items():
        if op["kind"] == "select" and not op["components"]:
            users = [o for o in ops.values() if label in o["children"] and o["kind"] in ("aggregate", "selectorwidth")]
            op["components"] = [c for u in users for c in u["components"] if c["type"] == "head"]
            op["note"] = "computed by the query-key circuit of the heads that use it"
    unused = {}
    L, H = assembled.model_config.num_layers, assembled.model_config.num_heads
    for l in range(L):
        zero = [h for h in range(H) if all(not np.any(sd[f"blocks.{l}.attn.{w}"][h]) for w in ("W_Q", "W_K", "W_V", "W_O"))]
        unused[str(l)] = zero
    return {"program": spec.name, "description": spec.description, "residual_labels": assembled.residual_labels,
            "output_node": sink[nodes.EXPR].label, "nodes": ops, "unused_heads": unused}


def random_inputs(spec, n: int, seed: int = 0) -> list[list]:
    rng = random.Random(seed)
    vocab = sorted(spec.vocab, key=str)
    out = []
    if "dyck" in spec.name or "balance" in spec.name:  # random strings are almost never balanced
        pairs = [("(", ")"), ("{", "}")] if "{" in spec.vocab else [("(", ")")]
        for _ in range(n // 3):
            xs = []
            for _ in range(rng.randint(1, spec.max_seq_len // 2)):
                o, c = rng.choice(pairs)
                xs += [o, c] if rng.random() < 0.5 or not xs else [o] + [c]
            xs = xs[: spec.max_seq_len]
            if xs not in out:
                out.append(xs)
    for _ in range(n * 4):
        length = rng.randint(1, spec.max_seq_len)
        if spec.name == "lib_sort_unique":
            if length > len(vocab):
                continue
            xs = rng.sample(vocab, length)
        else:
            xs = [rng.choice(vocab) for _ in range(length)]
        if xs not in out:
            out.append(xs)
        if len(out) == n:
            break
    return out


def _jsonable(v):
    if isinstance(v, (bool, int, str)) or v is None:
        return v
    if isinstance(v, float):
        return round(v, 6)
    return str(v)


def build(spec, out_dir: Path, n_examples: int = 24) -> dict:
    import torch
    from safetensors.torch import save_file
    from tracr.compiler import nodes
    from tracr.rasp import rasp

    program, graph, sink, craft_model, assembled = compile_program(spec)
    cfg, sd, out_basis = to_tl(assembled, sink, spec)
    categorical = rasp.is_categorical(sink[nodes.EXPR])
    enc = assembled.input_encoder.encoding_map
    input_tokens = [None] * len(enc)
    for tok, i in enc.items():
        input_tokens[i] = str(tok)
    vocab = {"input_tokens": input_tokens, "bos_token": BOS, "bos_id": enc[BOS], "pad_token": PAD,
             "pad_id": enc[PAD], "output_kind": "categorical" if categorical else "numerical",
             "output_tokens": [str(b.value) for b in out_basis] if categorical else None,
             "max_seq_len": spec.max_seq_len, "causal": spec.causal}
    examples = []
    for xs in random_inputs(spec, n_examples):
        want = rasp.evaluate(program, xs)
        got = assembled.apply([BOS] + xs)
        for w, g in zip(want, got.decoded[1:]):
            numeric = isinstance(w, float) or isinstance(g, float)  # RASP may report a numerical 0 as False
            if w is not None and (abs(float(w) - float(g)) > 1e-3 if numeric else w != g):
                raise AssertionError(f"tracr's model gives {g!r} where rasp.evaluate gives {w!r} on {xs}")
        examples.append({"input": [str(x) for x in xs], "output": [_jsonable(v) for v in want]})
    gt = ground_truth(program, graph, sink, craft_model, assembled, sd, spec)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=1))
    save_file({k: torch.tensor(v).contiguous() for k, v in sd.items()}, str(out_dir / "model.safetensors"))
    (out_dir / "vocab.json").write_text(json.dumps(vocab, indent=1))
    (out_dir / "ground_truth.json").write_text(json.dumps(gt, indent=1))
    (out_dir / "examples.json").write_text(json.dumps(examples, indent=1))
    return {"name": spec.name, "layers": cfg["n_layers"], "heads": cfg["n_heads"], "d_model": cfg["d_model"],
            "d_mlp": cfg["d_mlp"], "output": vocab["output_kind"]}


def _build_named(name: str, out: str) -> dict:
    """Build one program by name (run in a fresh interpreter, see `main`)."""
    from .programs import all_specs

    spec = next(s for s in all_specs() if s.name == name)
    return build(spec, Path(out) / name)


def main(argv=None) -> None:
    import multiprocessing

    from tqdm import tqdm

    from .programs import all_specs

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    names = [s.name for s in all_specs() if not a.only or s.name in a.only]
    built, failed = [], {}
    # One fresh interpreter per program: RASP objects shared between tracr's library calls keep
    # the ids they got in earlier builds, so building in one process would make op labels depend
    # on which programs came before.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        for name in tqdm(names, desc="compile testbeds"):
            try:
                built.append(pool.apply(_build_named, (name, str(a.out))))
            except Exception as e:  # report and go on: one program must not stop the rest
                failed[name] = f"{type(e).__name__}: {e}"
    for b in built:
        print(b)
    for k, v in failed.items():
        print("FAILED", k, v)


if __name__ == "__main__":
    main()
