"""Train a transcoder for every MLP, an SAE on every attention output and (kind `resid`) an SAE
on the residual stream after every layer of a model.

    python -m circuit_debugger.autoencoders.train [--model default|llama|DIR] [--out ../autoencoders/MODEL]
        [--kinds transcoder sae resid] [--activation topk|relu] [--k-transcoder 16] [--k-sae 32]
        [--latents 1024] [--tokens 2000000] [--seed 0] [--work ../.cache/ae-train-MODEL]

An embedded model ('default', 'llama') trains on its own corpus generator (the version in its
training.json), tokenized with its own tokenizer; other models need --corpus.
TopK autoencoders are trained with EleutherAI's sparsify (`pip install -e 'backend[train]'`),
on CPU through its Python API; ReLU+L1 ones (which sparsify lacks) with a small loop here.
Both are deterministic given --seed, show progress bars and resume from --work. Results are
written in the SAELens layout (see `format.py`); `training.json` records each kind's arguments.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Optional

import torch

from . import REPO_AUTOENCODERS
from .format import Autoencoder, save


def corpus_ids(tok, n_tokens: int, seed: int, ctx: int = 48, corpus=None) -> torch.Tensor:
    """[n, ctx] token ids from an embedded model's corpus generator (`corpus`, a module with
    `sample`; default: corpus v1): one document per row, starting at position 0 with BOS (as in
    the model's training), padded with BOS. Padding and the leading BOS are excluded from
    training and metrics (see `real_tokens`)."""
    from ..default_model import corpus as C

    corpus = corpus or C
    rng = random.Random(seed)
    train, held = getattr(corpus, "name_pairs", C.name_pairs)()
    rows, count = [], 0
    while count < n_tokens:
        ex = corpus.sample(rng, train + held)
        doc = [tok.bos_token_id] + tok.encode(ex.prefix + ex.answer, add_special_tokens=False)
        doc = doc[:ctx]
        rows.append(doc + [tok.bos_token_id] * (ctx - len(doc)))
        count += len(doc) - 1
    return torch.tensor(rows)


def real_tokens(ids: torch.Tensor, bos: int) -> torch.Tensor:
    """Mask of positions holding document tokens (not the leading BOS or padding)."""
    return ids != bos


KINDS = ("transcoder", "sae", "resid")
PREFIX = {"transcoder": "tc", "sae": "sae", "resid": "resid"}


class _Tap(torch.nn.Module):
    """Wraps a module and passes its output through an identity child called positionally.
    sparsify's hooks read `inputs[0]`, but Llama-family blocks and attention modules are called
    with keyword arguments only (empty positional inputs); the tap gives them a hookable output."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner, self.tap = inner, torch.nn.Identity()

    def forward(self, *args, **kwargs):
        return self.tap(self.inner(*args, **kwargs))

    def __getattr__(self, name):  # attributes the parent model reads from its blocks (e.g. attention_type)
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.inner, name)


def hookpoints(hf, kinds: list[str], layers: list[int]) -> list[tuple[str, int, str]]:
    """(kind, layer, sparsify module name relative to the base model) for each kind and layer:
    the MLP (transcoders: its input is the ln2 output, its output hook_mlp_out), a tap on the
    attention module's output (hook_attn_out) or on the whole block's output (hook_resid_post).
    Inserts the taps first (block taps wrap the attention taps' parents), then names them."""
    from sparsify.utils import get_layer_list

    _, blocks = get_layer_list(hf)
    modules = {}
    for l in layers:
        if "resid" in kinds and not isinstance(blocks[l], _Tap):
            blocks[l] = _Tap(blocks[l])
        block = blocks[l].inner if isinstance(blocks[l], _Tap) else blocks[l]
        attn = "attn" if hasattr(block, "attn") else "self_attn"  # GPT-2 / Llama-family names
        if "sae" in kinds and not isinstance(getattr(block, attn), _Tap):
            setattr(block, attn, _Tap(getattr(block, attn)))
        modules.update({("transcoder", l): block.mlp, ("sae", l): getattr(block, attn),
                        ("resid", l): blocks[l]})
    names = {id(m): n for n, m in hf.base_model.named_modules()}
    out = []
    for kind in kinds:
        for l in layers:
            m = modules[(kind, l)]
            out.append((kind, l, names[id(m.tap if isinstance(m, _Tap) else m)]))
    return out


def from_sparsify(folder: Path, model, layer: int, kind: str, k: int, name: str) -> Autoencoder:
    """A sparsify checkpoint as one of our dictionaries. Transcoders: sparsify reads the ln2
    output; the engine's ln2 gain (and bias, where the norm has one) is folded into the encoder
    so that it reads `ln2.hook_normalized` (LayerNorm and RMSNorm alike)."""
    from safetensors.torch import load_file

    w = load_file(str(folder / "sae.safetensors"))
    W_enc, b_enc = w["encoder.weight"].T.contiguous(), w["encoder.bias"]
    meta = {"trainer": "eai-sparsify 1.3.3"}
    if kind == "transcoder":
        gain, bias = model.W.ln[f"blocks.{layer}.ln2"]
        if bias is not None:
            b_enc = b_enc + bias.detach().to(W_enc) @ W_enc
        W_enc = gain.detach().to(W_enc)[:, None] * W_enc
        return Autoencoder(name, W_enc, b_enc, w["W_dec"], w["b_dec"], f"blocks.{layer}.ln2.hook_normalized",
                           f"blocks.{layer}.hook_mlp_out", "topk", k, False, meta)
    hook = f"blocks.{layer}.hook_attn_out" if kind == "sae" else f"blocks.{layer}.hook_resid_post"
    return Autoencoder(name, W_enc, b_enc, w["W_dec"], w["b_dec"], hook, None, "topk", k, True, meta)


def train_topk(hf, model, ids: torch.Tensor, kinds: list[str], layers: list[int], k: int, latents: int, seed: int,
               work: Path, out: Path, bos: int, auxk_alpha: float = 0.0, optimizer: str = "signum",
               lr: Optional[float] = None) -> None:
    """One sparsify run for `kinds`: ["transcoder"], or SAE kinds ("sae", "resid") trained
    together on the same forward passes."""
    from datasets import Dataset
    from sparsify import SaeConfig, Trainer, TrainConfig, TranscoderConfig

    transcoder = kinds == ["transcoder"]
    if "transcoder" in kinds and not transcoder:
        raise ValueError("transcoders train in a run of their own")
    placed = hookpoints(hf, kinds, layers)
    points = [p for _, _, p in placed]
    coder = (TranscoderConfig if transcoder else SaeConfig)(num_latents=latents, k=k)
    name = "+".join(kinds)
    run = work / name
    cfg = TrainConfig(coder, batch_size=16, hookpoints=points, log_to_wandb=False, save_dir=str(work), run_name=name,
                      init_seeds=[seed], save_every=200, exclude_tokens=[bos], auxk_alpha=auxk_alpha,
                      optimizer=optimizer, lr=lr, lr_warmup_steps=100)
    ds = Dataset.from_dict({"input_ids": ids.tolist()}).with_format("torch")
    torch.manual_seed(seed)
    trainer = Trainer(cfg, ds, hf)
    if (run / "state.pt").exists():
        trainer.load_state(str(run))
        print(f"resuming {name} at step {trainer.global_step}")
    trainer.fit()
    for kind, l, p in placed:
        save(from_sparsify(run / p, model, l, kind, k, f"{PREFIX[kind]}{l}"), out / f"{PREFIX[kind]}{l}")


class ReluTrainer:
    """One ReLU+L1 autoencoder (a transcoder of layer `layer`'s MLP or an SAE on its attention
    output) trained on activations collected through the engine's own hooks (sparsify has no
    L1). Every step is a function of (seed, step) and the state alone: the batch rows are drawn
    by a generator seeded with the step number, and `state()` holds the parameters and Adam's
    moments exactly, so training cut into chunks and resumed from saved states ends with the
    same weights, bit for bit, as one uninterrupted run (the autoencoder-training job relies on it)."""

    def __init__(self, model, ids: torch.Tensor, kind: str, layer: int, latents: int, l1: float, seed: int,
                 batch: int = 16, lr: float = 1e-3):
        d = model.shape.d_model
        self.model, self.ids, self.kind, self.l1, self.seed, self.batch = model, ids, kind, l1, seed, batch
        self.name = f"{PREFIX[kind]}{layer}"
        self.x_hook = {"transcoder": f"blocks.{layer}.ln2.hook_normalized", "sae": f"blocks.{layer}.hook_attn_out",
                       "resid": f"blocks.{layer}.hook_resid_post"}[kind]
        self.y_hook = f"blocks.{layer}.hook_mlp_out" if kind == "transcoder" else self.x_hook
        g = torch.Generator().manual_seed(seed + layer)
        self.ae = Autoencoder(self.name, torch.randn(d, latents, generator=g) / d ** 0.5, torch.zeros(latents),
                              torch.randn(latents, d, generator=g) / latents ** 0.5, torch.zeros(d), self.x_hook,
                              self.y_hook if kind == "transcoder" else None, "standard", None, kind != "transcoder",
                              {"trainer": "circuit_debugger relu+l1", "l1_coefficient": l1})
        self.params = [self.ae.W_enc, self.ae.b_enc, self.ae.W_dec, self.ae.b_dec]
        for p in self.params:
            p.requires_grad_(True)
        self.opt = torch.optim.Adam(self.params, lr=lr)
        self.step = 0

    def run(self, upto: int, progress: bool = False) -> None:
        """Train steps self.step .. upto-1."""
        from tqdm import tqdm

        from ..execution import RunRequest, execute

        d = self.model.shape.d_model
        steps = range(self.step, upto)
        for step in tqdm(steps, initial=self.step, total=upto, desc=f"relu {self.name}") if progress else steps:
            g = torch.Generator().manual_seed(self.seed * 7919 + step)
            rows = self.ids[torch.randint(0, len(self.ids), (self.batch,), generator=g)]
            with torch.no_grad():
                store = execute(self.model, None, RunRequest(capture=sorted({self.x_hook, self.y_hook}), tokens=rows)).acts
            keep = real_tokens(rows, self.model.codec.bos_id).reshape(-1)
            x, y = store[self.x_hook].reshape(-1, d)[keep], store[self.y_hook].reshape(-1, d)[keep]
            ae = self.ae
            acts = ae.encode(x)
            loss = ((ae.decode(acts) - y) ** 2).sum(-1).mean() / y.var(0).sum() + \
                self.l1 * (acts * ae.W_dec.norm(dim=1)).sum(-1).mean()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            self.step = step + 1

    def state(self) -> tuple[dict, dict]:
        """(tensors, JSON-able rest): the parameters, Adam's per-parameter state and its settings."""
        tensors = {f"param.{i}": p.detach().clone() for i, p in enumerate(self.params)}
        opt = self.opt.state_dict()
        for i, st in opt["state"].items():
            for k, v in st.items():
                tensors[f"adam.{i}.{k}"] = v.detach().clone() if torch.is_tensor(v) else torch.tensor(v)
        return tensors, {"step": self.step, "param_groups": opt["param_groups"], "name": self.name}

    def load_state(self, tensors: dict, rest: dict) -> None:
        with torch.no_grad():
            for i, p in enumerate(self.params):
                p.copy_(tensors[f"param.{i}"])
        state: dict = {}
        for key, v in tensors.items():
            if key.startswith("adam."):
                _, i, k = key.split(".", 2)
                state.setdefault(int(i), {})[k] = v
        self.opt.load_state_dict({"state": state, "param_groups": rest["param_groups"]})
        self.step = rest["step"]

    def save(self, folder: Path) -> None:
        """safetensors + JSON; state.json is written last, so a folder that has it is complete."""
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        tensors, rest = self.state()
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "state.safetensors"))
        (folder / "state.json").write_text(json.dumps(rest))

    def load(self, folder: Path) -> None:
        from safetensors.torch import load_file

        self.load_state(load_file(str(folder / "state.safetensors")), json.loads((folder / "state.json").read_text()))

    def autoencoder(self) -> Autoencoder:
        """The trained dictionary (detached copies)."""
        ae = self.ae
        return Autoencoder(ae.name, ae.W_enc.detach().clone(), ae.b_enc.detach().clone(), ae.W_dec.detach().clone(),
                           ae.b_dec.detach().clone(), ae.hook_name, ae.hook_name_out, ae.activation, None,
                           ae.apply_b_dec_to_input, dict(ae.extra or {}))


def train_relu(model, ids: torch.Tensor, kind: str, layers: list[int], latents: int, l1: float, seed: int,
               work: Path, out: Path, steps: int = 2000, batch: int = 16) -> None:
    """ReLU + L1 (sparsify has no L1), one layer after another; resumes from `work` (a state
    saved every 200 steps)."""
    for l in layers:
        t = ReluTrainer(model, ids, kind, l, latents, l1, seed, batch)
        ckpt = work / f"relu-{t.name}"
        if (ckpt / "state.json").exists():
            t.load(ckpt)
        while t.step < steps:
            t.run(min(steps, (t.step // 200 + 1) * 200), progress=True)
            t.save(ckpt)
        save(t.autoencoder(), out / t.name)


DEFAULT_KINDS = {"default": ["transcoder", "sae"], "llama": ["transcoder", "sae", "resid"]}


def training_corpus(model, n_tokens: int, seed: int, spec=None) -> torch.Tensor:
    """Rows of token ids to train (or measure) dictionaries of `model` on: `spec` (a user
    corpus), else an embedded model's own corpus generator with its own tokenizer."""
    from ..explanations.build import corpus

    return corpus(model, n_tokens, seed, spec, progress=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default", help="'default', 'llama' (the embedded models) or a checkpoint folder")
    ap.add_argument("--out", type=Path, default=None, help="default: autoencoders/MODEL for an embedded model")
    ap.add_argument("--kinds", nargs="+", default=None, choices=KINDS,
                    help="default: transcoder sae (and resid for llama)")
    ap.add_argument("--activation", default="topk", choices=["topk", "relu"])
    ap.add_argument("--k-transcoder", type=int, default=16)
    ap.add_argument("--k-sae", type=int, default=32, help="k of attention and residual SAEs")
    ap.add_argument("--latents", type=int, default=1024)
    ap.add_argument("--l1", type=float, default=1e-3)
    ap.add_argument("--optimizer", default="signum", choices=["signum", "adam", "muon"], help="sparsify's optimizer")
    ap.add_argument("--lr", type=float, default=None, help="learning rate (default: sparsify's choice by width)")
    ap.add_argument("--auxk-alpha", type=float, default=0.0, help="sparsify's AuxK loss weight (revives dead latents)")
    ap.add_argument("--tokens", type=int, default=2_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, default=None, help="default: .cache/ae-train-MODEL")
    ap.add_argument("--corpus", default=None, help="train on this text/JSONL/Parquet/CSV file or hf:ORG/NAME "
                    "(required for models other than the embedded ones; see explanations/corpus.py)")
    ap.add_argument("--column", default="text")
    ap.add_argument("--ctx", type=int, default=64)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from transformers import AutoModelForCausalLM

    from ..embedded import EMBEDDED
    from ..explanations.build import CorpusSpec
    from ..loading import load_model

    label = a.model if a.model in EMBEDDED else Path(a.model).name
    a.out = a.out or REPO_AUTOENCODERS / label
    a.work = a.work or Path(f".cache/ae-train-{label}")
    a.kinds = a.kinds or DEFAULT_KINDS.get(a.model, ["transcoder", "sae"])
    directory = EMBEDDED.get(a.model, Path(a.model))
    model = load_model(str(directory), name=label)  # the bare model: no shipped dictionaries loaded
    spec = CorpusSpec(a.corpus, a.column, a.ctx) if a.corpus else None
    ids = training_corpus(model, a.tokens, a.seed + 1000, spec)
    a.work.mkdir(parents=True, exist_ok=True)
    a.out.mkdir(parents=True, exist_ok=True)
    layers = list(range(model.shape.n_layers))
    if a.activation == "topk":  # transcoders alone; attention and residual SAEs together (one forward per batch)
        groups = [g for g in (["transcoder"] if "transcoder" in a.kinds else [],
                              [k for k in a.kinds if k != "transcoder"]) if g]
        for kinds in groups:
            hf = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
            for p in hf.parameters():
                p.requires_grad_(False)
            k = a.k_transcoder if kinds == ["transcoder"] else a.k_sae
            train_topk(hf, model, ids, kinds, layers, k, a.latents, a.seed, a.work, a.out, model.codec.bos_id,
                       a.auxk_alpha, a.optimizer, a.lr)
    else:
        for kind in a.kinds:
            train_relu(model, ids, kind, layers, a.latents, a.l1, a.seed, a.work, a.out)
    record = a.out / "training.json"
    info = json.loads(record.read_text()) if record.exists() else {}
    if not isinstance(info.get("kinds"), dict):  # a file from before per-kind records (one run for all kinds)
        info = {"kinds": {}}
    for kind in a.kinds:
        info["kinds"][kind] = {**{k: v for k, v in vars(a).items() if k != "kinds"}, "kind": kind}
    record.write_text(json.dumps(info, default=str, indent=1))
    print(f"saved to {a.out}")


if __name__ == "__main__":
    main()
