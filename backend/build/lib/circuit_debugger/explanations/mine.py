"""Mine top-activating examples and statistics for every node of a model.

    python -m circuit_debugger.explanations.mine [--model default] [--tokens 100000]
        [--out ../explanations/default.sqlite] [--work ../.cache/mine]

Streams a corpus through the model (and its autoencoders) once, keeping per node, in
memory bounded by the number of nodes (not the corpus): the top-k activating tokens with the
activation window around each, a random sample of active tokens (priority-key reservoir;
quantile examples are drawn from it), density (fraction of tokens active), mean, max and a
fixed log-binned histogram; per head, the top (query token, key token) pairs by attention
weight and by write norm. Progress bar; checkpoints (safetensors, no pickle) let it resume.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from .activations import batch_activations, node_index

EDGES = torch.cat([torch.tensor([0.0]), torch.logspace(-3, 3, 25)])  # bin 0: ≤ 0; last: > 1e3


@dataclass
class Config:
    k: int = 10  # top examples per node
    r: int = 10  # random active examples per node
    before: int = 10  # window: tokens before the example's token
    after: int = 3
    pairs: int = 10  # top (query, key) pairs per head and criterion
    batch: int = 16
    seed: int = 0

    @property
    def width(self) -> int:
        return self.before + 1 + self.after


class Miner:
    def __init__(self, n_nodes: int, n_heads_total: int, cfg: Config):
        N, c = n_nodes, cfg
        self.cfg = cfg
        ninf = lambda *s: torch.full(s, float("-inf"))
        self.s = {
            "top_val": ninf(N, c.k), "top_idx": torch.full((N, c.k), -1), "top_win": torch.zeros(N, c.k, c.width),
            "rnd_key": ninf(N, c.r), "rnd_val": torch.zeros(N, c.r), "rnd_idx": torch.full((N, c.r), -1),
            "rnd_win": torch.zeros(N, c.r, c.width),
            "active": torch.zeros(N), "sum": torch.zeros(N), "max": ninf(N), "hist": torch.zeros(N, len(EDGES) + 1),
            "n_tokens": torch.zeros(1),
            "pw_val": ninf(n_heads_total, c.pairs), "pw_idx": torch.full((n_heads_total, c.pairs), -1),
            "pn_val": ninf(n_heads_total, c.pairs), "pn_idx": torch.full((n_heads_total, c.pairs), -1),
        }
        self.batches = 0

    def _merge(self, prefix: str, keys: torch.Tensor, base: int, acts: torch.Tensor, valid: torch.Tensor,
               values=None) -> None:
        """Merge this batch's candidates (ranking keys [N, BT]) into the kept lists, for the
        nodes with a candidate beating their worst kept key only: once the lists fill up few
        nodes qualify, which keeps mining cheap."""
        s, c = self.s, self.cfg
        kept = s["rnd_key"] if prefix == "rnd" else s["top_val"]
        K = kept.shape[1]
        rows = (keys > kept[:, -1:]).any(1).nonzero().flatten()
        if len(rows) == 0:
            return
        T = acts.shape[1]
        top = torch.cat([kept[rows], keys[rows]], 1).topk(K, dim=1)
        pos = top.indices
        from_batch = pos >= K
        j = (pos - K).clamp(min=0)
        old = pos.clamp(max=K - 1)
        b, t = j // T, j % T
        pad = torch.nn.functional.pad(torch.where(valid[..., None], acts[..., rows], torch.zeros(())),
                                      (0, 0, c.before, c.after))  # [B, T + before + after, rows]
        n = torch.arange(len(rows))[:, None].expand(-1, K)
        new_win = torch.stack([pad[b, t + w, n] for w in range(c.width)], -1)
        win = s[prefix + "_win"][rows]
        s[prefix + "_win"][rows] = torch.where(from_batch[..., None], new_win,
                                               win.gather(1, old[..., None].expand(-1, -1, c.width)))
        s[prefix + "_idx"][rows] = torch.where(from_batch, base + j, s[prefix + "_idx"][rows].gather(1, old))
        if prefix == "rnd":
            s["rnd_val"][rows] = torch.where(from_batch, values[rows].gather(1, j), s["rnd_val"][rows].gather(1, old))
            s["rnd_key"][rows] = top.values
        else:
            s["top_val"][rows] = top.values

    def update(self, acts: torch.Tensor, valid: torch.Tensor, patterns: list, vnorms: list, row_offset: int):
        """acts [B, T, N] for rows row_offset.., valid [B, T] marks real tokens."""
        s, c = self.s, self.cfg
        B, T, N = acts.shape
        base = row_offset * T
        a = acts.reshape(B * T, N).T.contiguous()  # [N, BT]
        v = valid.reshape(-1)
        masked = torch.where(v[None], a, torch.full_like(a, float("-inf")))
        self._merge("top", masked, base, acts, valid)
        g = torch.Generator().manual_seed(c.seed * 1_000_003 + row_offset)
        keys = torch.where(masked > 0, torch.rand(a.shape, generator=g), torch.full_like(a, float("-inf")))
        self._merge("rnd", keys, base, acts, valid, values=a)
        av = torch.where(v[None], a, torch.zeros_like(a))
        s["active"] += ((a > 0) & v[None]).sum(1)
        s["sum"] += av.sum(1)
        s["max"] = torch.maximum(s["max"], masked.max(1).values)
        bins = torch.bucketize(a, EDGES)
        s["hist"] += torch.zeros_like(s["hist"]).scatter_add_(1, bins, v[None].expand(N, -1).float())
        s["n_tokens"] += v.sum()
        # heads: (query, key) pairs by weight and by write norm; BOS keys and padding excluded
        pw, pn = [], []
        for pat, vn in zip(patterns, vnorms):
            ok = valid[:, None, :, None] & valid[:, None, None, :]
            w = torch.where(ok, pat, torch.full_like(pat, float("-inf")))  # [B, H, Tq, Tk]
            pw.append(w.permute(1, 0, 2, 3).reshape(pat.shape[1], -1))
            pn.append((w * vn[:, :, None, :]).permute(1, 0, 2, 3).reshape(pat.shape[1], -1))
        for key, cand in (("pw", torch.cat(pw)), ("pn", torch.cat(pn))):
            allv = torch.cat([s[key + "_val"], cand], 1)
            top = allv.topk(c.pairs, dim=1)
            fb = top.indices >= c.pairs
            jj = (top.indices - c.pairs).clamp(min=0)
            s[key + "_idx"] = torch.where(fb, row_offset * T * T + jj, s[key + "_idx"].gather(1, top.indices.clamp(max=c.pairs - 1)))
            s[key + "_val"] = top.values
        self.batches += 1

    def save(self, work: Path) -> None:
        from safetensors.torch import save_file

        work.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.s.items()}, str(work / "state.safetensors"))
        (work / "state.json").write_text(json.dumps({"batches": self.batches, "config": vars(self.cfg)}))

    def load(self, work: Path) -> bool:
        from safetensors.torch import load_file

        if not (work / "state.json").exists():
            return False
        meta = json.loads((work / "state.json").read_text())
        if meta["config"] != vars(self.cfg):
            raise SystemExit(f"{work}: checkpoint has another configuration; remove it to start over")
        self.s = load_file(str(work / "state.safetensors"))
        self.batches = meta["batches"]
        return True


def mine(model, rows: torch.Tensor, valid: torch.Tensor, cfg: Config, work: Optional[Path] = None, every: int = 20,
         progress: bool = True) -> Miner:
    from tqdm import tqdm

    index = node_index(model)
    miner = Miner(len(index), model.shape.n_layers * model.shape.n_heads, cfg)
    if work is not None and miner.load(work):
        print(f"resuming after {miner.batches} batches")
    n_batches = (len(rows) + cfg.batch - 1) // cfg.batch
    for b in tqdm(range(miner.batches, n_batches), initial=miner.batches, total=n_batches, desc="mine",
                  disable=not progress):
        sl = slice(b * cfg.batch, (b + 1) * cfg.batch)
        acts, patterns, vnorms = batch_activations(model, rows[sl])
        miner.update(acts.cpu(), valid[sl], [p.cpu() for p in patterns], [v.cpu() for v in vnorms], b * cfg.batch)
        if work is not None and (miner.batches % every == 0 or miner.batches == n_batches):
            miner.save(work)
    return miner
