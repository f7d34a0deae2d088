"""Measure autoencoders and write the table in autoencoders/README.md.

    python -m circuit_debugger.autoencoders.metrics [--model default|llama] [--dir ../autoencoders/MODEL]
        [--tokens 64000] [--write]

Per autoencoder, on held-out tokens of the model's own corpus: L0 (mean active latents per
token), fraction of variance explained, dead-latent fraction (never active on these tokens), CE
loss recovered when its reconstruction replaces the sublayer or residual (error node zeroed)
relative to zero-ablating it, and the model's IOI logit diff with that reconstruction spliced in.
`--write` writes DIR/metrics.json and the table between this model's markers in
autoencoders/README.md (`<!-- metrics:start -->` for the default model, `<!-- metrics-llama:start -->`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from . import REPO_AUTOENCODERS, load_onto
from .splice import SpliceChoice


def _ce(model, ids, ivs=(), splice=None, edits=None, logits=None) -> float:
    """Mean next-token loss over document tokens (padding targets excluded); `logits` when
    this forward already ran."""
    from ..execution import RunRequest, execute

    if logits is None:
        logits = execute(model, None, RunRequest(ivs, tokens=ids, splice=splice, edits=edits or {})).logits
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                            reduction="none")
    keep = (ids[:, 1:] != model.codec.bos_id).reshape(-1)
    return float(nll[keep].mean())


def measure(model, ids: torch.Tensor, ioi_prompts, batch: int = 32) -> list[dict]:
    from ..engine import Debugger
    from ..execution import RunRequest, execute
    from ..interventions import Intervention

    dbg = Debugger([model], cache_size=4)
    rows = []
    aes = model.autoencoders
    clean_ld = sum(dbg.intervene(model.name, p, [], target=io, distractor=s)["logit_diff"]
                   for p, io, s in ioi_prompts) / len(ioi_prompts)
    sites = {"transcoder": ("TERR", "MLP"), "sae": ("SERR", "ATTN"), "resid": ("RERR", "RESID")}
    for kind, family in (("transcoder", aes.transcoders), ("sae", aes.saes), ("resid", aes.resids)):
        for layer, ae in sorted(family.items()):  # resid: `layer` is the residual entering that layer
            err, sub = (f"L{layer}.{x}" for x in sites[kind])
            choice = {"transcoder": SpliceChoice((layer,)), "sae": SpliceChoice((), (layer,)),
                      "resid": SpliceChoice((), (), (layer,))}[kind]
            y_hook = ae.out_hook
            l0 = sse = sst = 0.0
            n_tok = 0
            alive = torch.zeros(ae.d_sae, dtype=torch.bool)
            ce = {"clean": 0.0, "spliced": 0.0, "zero": 0.0}
            for start in range(0, len(ids), batch):
                rows_ = ids[start:start + batch]
                with torch.no_grad():
                    clean = execute(model, None, RunRequest(capture=sorted({ae.hook_name, y_hook}), tokens=rows_))
                    store = clean.acts
                    keep = (rows_ != model.codec.bos_id).reshape(-1)
                    x = store[ae.hook_name].reshape(-1, ae.W_enc.shape[0])[keep]
                    y = store[y_hook].reshape(-1, ae.W_dec.shape[1])[keep]
                    acts = ae.encode(x)
                    recon = ae.decode(acts)
                l0 += float((acts > 0).sum())
                alive |= (acts > 0).any(0)
                sse += float(((y - recon) ** 2).sum())
                sst += float(((y - y.mean(0)) ** 2).sum())
                n_tok += x.shape[0]
                w = rows_.shape[0] / len(ids)
                ce["clean"] += w * _ce(model, rows_, logits=clean.logits)
                ce["spliced"] += w * _ce(model, rows_, [Intervention.make(err, "zero")], choice)
                ce["zero"] += w * _ce(model, rows_, [Intervention.make(sub, "zero")])
            ld = sum(dbg.intervene(model.name, p, [{"node": err, "op": "zero"}], target=io, distractor=s)["logit_diff"]
                     for p, io, s in ioi_prompts) / len(ioi_prompts)
            rows.append({
                "name": ae.name, "kind": kind, "layer": layer, "latents": ae.d_sae, "activation": ae.activation,
                "k": ae.k, "l0": l0 / n_tok, "fve": 1 - sse / sst, "dead_fraction": 1 - float(alive.float().mean()),
                "ce_clean": ce["clean"], "ce_spliced": ce["spliced"], "ce_zero_ablated": ce["zero"],
                "ce_loss_recovered": (ce["zero"] - ce["spliced"]) / (ce["zero"] - ce["clean"]),
                "ioi_logit_diff_clean": clean_ld, "ioi_logit_diff_spliced": ld, "tokens": n_tok,
            })
    return rows


def reconstruction_metrics(model, ae, ids: torch.Tensor, batch: int = 32) -> dict:
    """The same measures as `measure` (L0, variance explained, dead fraction, CE loss with the
    reconstruction in place of the sublayer's output vs zero-ablating it) for a dictionary that
    is NOT loaded onto the model: its reconstruction enters as a hook edit of the output hook,
    so a model shared with other work (a job worker's copy) is left unchanged. For dictionaries
    reading `ln2.hook_normalized` (transcoders) or `hook_attn_out` (SAEs)."""
    from ..execution import RunRequest, execute

    d_in, d_out = ae.W_enc.shape[0], ae.W_dec.shape[1]
    l0 = sse = sst = 0.0
    n_tok = 0
    alive = torch.zeros(ae.d_sae, dtype=torch.bool)
    ce = {"clean": 0.0, "spliced": 0.0, "zero": 0.0}
    for start in range(0, len(ids), batch):
        rows = ids[start:start + batch]
        seen: dict = {}

        def read(x):
            seen["x"] = x
            return x

        recon = {ae.hook_name: read, ae.out_hook: lambda y: ae.decode(ae.encode(seen["x"])).to(y.dtype)}
        if ae.out_hook == ae.hook_name:
            recon = {ae.hook_name: lambda x: ae.decode(ae.encode(x)).to(x.dtype)}
        with torch.no_grad():
            store = execute(model, None, RunRequest(capture=sorted({ae.hook_name, ae.out_hook}), tokens=rows)).acts
            keep = (rows != model.codec.bos_id).reshape(-1)
            x = store[ae.hook_name].reshape(-1, d_in)[keep]
            y = store[ae.out_hook].reshape(-1, d_out)[keep]
            acts = ae.encode(x)
            l0 += float((acts > 0).sum())
            alive |= (acts > 0).any(0)
            sse += float(((y - ae.decode(acts)) ** 2).sum())
            sst += float(((y - y.mean(0)) ** 2).sum())
            n_tok += x.shape[0]
            w = rows.shape[0] / len(ids)
            ce["clean"] += w * _ce(model, rows)
            ce["spliced"] += w * _ce(model, rows, edits=recon)
            ce["zero"] += w * _ce(model, rows, edits={ae.out_hook: torch.zeros_like})
    return {"name": ae.name, "latents": ae.d_sae, "l0": l0 / n_tok, "fve": 1 - sse / sst,
            "dead_fraction": 1 - float(alive.float().mean()), "ce_clean": ce["clean"], "ce_spliced": ce["spliced"],
            "ce_zero_ablated": ce["zero"],
            "ce_loss_recovered": (ce["zero"] - ce["spliced"]) / (ce["zero"] - ce["clean"]), "tokens": n_tok}


def describe(r: dict) -> str:
    if r["kind"] == "resid":
        return f"`{r['name']}` (residual SAE, entering layer {r['layer']})"
    return f"`{r['name']}` ({r['kind']}, layer {r['layer']})"


def table(rows: list[dict]) -> str:
    lines = ["| autoencoder | latents | act. | L0 | variance explained | dead | CE clean → spliced (zero-abl.) | CE loss recovered | IOI logit diff spliced (clean) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        act = f"topk {r['k']}" if r["activation"] == "topk" else "relu+L1"
        lines.append(
            f"| {describe(r)} | {r['latents']} | {act} | {r['l0']:.1f} | {r['fve']:.3f} | "
            f"{r['dead_fraction']:.3f} | {r['ce_clean']:.3f} → {r['ce_spliced']:.3f} ({r['ce_zero_ablated']:.3f}) | "
            f"{100 * r['ce_loss_recovered']:.1f}% | {r['ioi_logit_diff_spliced']:.2f} ({r['ioi_logit_diff_clean']:.2f}) |")
    return "\n".join(lines)


def markers(model: str) -> tuple[str, str]:
    tag = "metrics" if model == "default" else f"metrics-{model}"
    return f"<!-- {tag}:start -->", f"<!-- {tag}:end -->"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="default", choices=["default", "llama"])
    ap.add_argument("--dir", type=Path, default=None, help="default: autoencoders/MODEL")
    ap.add_argument("--tokens", type=int, default=64_000)
    ap.add_argument("--ioi", type=int, default=50)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    from ..default_model import corpus as C
    from ..default_model.evaluate import ioi_prompts
    from ..embedded import EMBEDDED
    from ..loading import load_model
    from .train import training_corpus

    a.dir = a.dir or REPO_AUTOENCODERS / a.model
    model = load_model(str(EMBEDDED[a.model]), name=a.model)  # the bare model, then exactly these dictionaries
    errors = load_onto(model, a.dir)
    if errors:
        raise SystemExit(f"could not load: {errors}")
    ids = training_corpus(model, a.tokens, seed=999)  # training used seed + 1000
    _, held = C.name_pairs()
    rows = measure(model, ids, ioi_prompts(a.ioi, held, C.IOI_TRAIN_TEMPLATES, seed=101))
    print(table(rows))
    if a.write:
        (a.dir / "metrics.json").write_text(json.dumps(rows, indent=1))
        write_table(a.dir.parent / "README.md", a.model, table(rows))


def write_table(readme: Path, model: str, table_text: str) -> None:
    """Replace this model's table in the README (appended when missing); locked, so that the
    two embedded models' builds can run side by side."""
    import fcntl
    import hashlib
    import tempfile

    start, end = markers(model)
    block = f"{start}\n{table_text}\n{end}"
    tag = hashlib.sha256(str(readme.resolve()).encode()).hexdigest()[:12]
    with open(Path(tempfile.gettempdir()) / f"circuit-debugger-metrics-{tag}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = readme.read_text() if readme.exists() else ""
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):] if start in text else text + "\n" + block + "\n"
        readme.write_text(text)


if __name__ == "__main__":
    main()
