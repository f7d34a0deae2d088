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
from .sparse_block import SparseBlock

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

    @staticmethod
    def _candidates(node: torch.Tensor, tok: torch.Tensor, key: torch.Tensor, K: int):
        """Group sparse candidates (node, token index, key) by node, keeping each node's K best:
        (rows [R], keys [R, K] (-inf padded), token indices [R, K], order into the inputs [R, K])."""
        order = torch.argsort(key, descending=True, stable=True)
        order = order[torch.argsort(node[order], stable=True)]  # by node, then by key (descending)
        rows, counts = torch.unique_consecutive(node[order], return_counts=True)
        slot = torch.repeat_interleave(torch.arange(len(rows)), counts)
        rank = torch.arange(len(order)) - (torch.cumsum(counts, 0) - counts)[slot]
        keep = rank < K
        keys = torch.full((len(rows), K), float("-inf"))
        cols = torch.zeros((len(rows), K), dtype=torch.long)
        src = torch.zeros((len(rows), K), dtype=torch.long)
        keys[slot[keep], rank[keep]] = key[order][keep]
        cols[slot[keep], rank[keep]] = tok[order][keep]
        src[slot[keep], rank[keep]] = order[keep]
        return rows, keys, cols, src

    def _merge(self, prefix: str, rows: torch.Tensor, off: int, keys: torch.Tensor, cols: torch.Tensor,
               pos: torch.Tensor, base: int, acts: torch.Tensor, valid: torch.Tensor,
               values: Optional[torch.Tensor] = None) -> None:
        """Merge candidates into the kept lists of nodes `off + rows` (`rows` index the columns
        of the block `acts` [B, T, n]): keys [R, M] (-inf: none) of the real tokens cols [R, M]
        (indices into the flat positions `pos`); `values` [R, M] for the reservoir.

        Lists are kept unsorted (sorted once at the end, `finish`): an entry that enters takes
        the slot of one that leaves, so only the new entries' windows are written."""
        if len(rows) == 0:
            return
        s, c = self.s, self.cfg
        g = rows + off
        kept = s["rnd_key"] if prefix == "rnd" else s["top_val"]
        K = kept.shape[1]
        T = acts.shape[1]
        # a stable sort, not topk: ties go to the kept entry, then to the earlier token, so the
        # dense and sparse paths (and any batch grouping of candidates) keep the same entries
        both = torch.cat([kept[g], keys], 1)
        idx = both.sort(dim=1, descending=True, stable=True).indices[:, :K]
        topv = both.gather(1, idx)
        stays = torch.zeros((len(rows), K), dtype=torch.bool)
        r_old, k_old = (idx < K).nonzero(as_tuple=True)
        stays[r_old, idx[r_old, k_old]] = True
        er, ek = (~stays).nonzero(as_tuple=True)  # freed slots, row-major
        nr, nk = (idx >= K).nonzero(as_tuple=True)  # entering entries, row-major: as many per row
        if len(nr) == 0:
            return
        m = idx[nr, nk] - K
        kv = topv[nr, nk]
        real = kv > float("-inf")
        jv = cols[nr, m]  # index among the real tokens
        j = pos[jv]  # flat position in the batch
        bb, tt = j // T, j % T
        P = tt[:, None] + torch.arange(-c.before, c.after + 1)[None]  # [n_new, width]
        inside = (P >= 0) & (P < T)
        Pc = P.clamp(0, T - 1)
        if isinstance(acts, SparseBlock):
            vals = acts.at(bb[:, None], Pc, rows[nr][:, None]).float()
        else:
            vals = acts[bb[:, None], Pc, rows[nr][:, None]].float()
        win = torch.where(inside & valid[bb[:, None], Pc] & real[:, None], vals, torch.zeros(()))
        ge = g[er]
        s[prefix + "_win"][ge, ek] = win
        s[prefix + "_idx"][ge, ek] = torch.where(real, base + j, torch.full_like(j, -1))
        kept[ge, ek] = kv
        if prefix == "rnd":
            s["rnd_val"][ge, ek] = torch.where(real, values[nr, m], torch.zeros(()))

    def finish(self) -> None:
        """Sort every kept list by its key (descending), as the store and readers expect."""
        s = self.s
        for prefix, key, extra in (("top", "top_val", ()), ("rnd", "rnd_key", ("rnd_val",))):
            order = s[key].argsort(dim=1, descending=True, stable=True)
            s[key] = s[key].gather(1, order)
            s[prefix + "_idx"] = s[prefix + "_idx"].gather(1, order)
            s[prefix + "_win"] = s[prefix + "_win"].gather(1, order[..., None].expand(-1, -1, s[prefix + "_win"].shape[2]))
            for e in extra:
                s[e] = s[e].gather(1, order)

    def _block(self, blk: torch.Tensor, off: int, valid: torch.Tensor, pos: torch.Tensor, row_offset: int) -> None:
        """Statistics for nodes off.. off + n from one block of columns [B, T, n]."""
        s, c = self.s, self.cfg
        B, T, n = blk.shape
        if isinstance(blk, SparseBlock):
            return self._sparse_block(blk, off, valid, pos, row_offset)
        base = row_offset * T
        a = blk.reshape(B * T, n)[pos].float()  # [nv, n]: the real tokens only
        nv = len(pos)
        sl = slice(off, off + n)
        # top-k: only entries beating their node's kept k-th value are candidates (sparse)
        beats = a > s["top_val"][sl].min(1).values
        if int(torch.count_nonzero(beats)) > beats.numel() // 8:  # lists still filling: dense
            rows = beats.any(0).nonzero().flatten()
            cols = torch.arange(nv).expand(len(rows), -1)
            self._merge("top", rows, off, torch.where(beats[:, rows].T, a[:, rows].T, float("-inf")), cols, pos, base,
                        blk, valid)
        else:
            tok, node = beats.nonzero(as_tuple=True)
            if len(tok):
                rows, keys, cols, _ = self._candidates(node, tok, a[tok, node], c.k)
                self._merge("top", rows, off, keys, cols, pos, base, blk, valid)
        positive = a > 0
        n_pos = torch.count_nonzero(positive, dim=0)
        s["active"][sl] += n_pos
        s["sum"][sl] += a.sum(0)
        s["max"][sl] = torch.maximum(s["max"][sl], a.max(0).values)
        r, col = positive.nonzero(as_tuple=True)  # the active entries
        vals = a[r, col]
        self._hist_and_reservoir(sl, n, nv, n_pos, r, col, vals, off, pos, base, blk, valid, row_offset)

    def _sparse_block(self, blk: SparseBlock, off: int, valid: torch.Tensor, pos: torch.Tensor, row_offset: int) -> None:
        """`_block` for a SparseBlock: the same state from the kept entries only. An entry not
        kept is 0, so it beats a node's kept values only while the node's list still has free
        slots (-inf); for those nodes the zeros that can enter are the first ones in token
        order (ties go to the earlier token), so tokens [0, k + m) (m: the node's positive
        entries) are candidates too. Entries are visited token by token, latents ascending: the
        order `nonzero()` gives on the dense block, so candidates, reservoir keys and merges are
        the dense path's."""
        s, c = self.s, self.cfg
        n, T = blk.n, blk.T
        base = row_offset * T
        nv = len(pos)
        sl = slice(off, off + n)
        idx, val = blk.idx[pos], blk.val[pos].float()  # [nv, k]
        tok = torch.arange(nv)[:, None].expand_as(idx)
        positive = val > 0
        kth = s["top_val"][sl].min(1).values
        beats = val > kth[idx]
        cn, ct, cv = idx[beats], tok[beats], val[beats]
        filling = (kth < 0).nonzero().flatten()
        if len(filling):
            lim = torch.zeros(n, dtype=torch.long)
            lim[filling] = (c.k + torch.bincount(idx[positive], minlength=n)[filling]).clamp(max=nv)
            fn = torch.repeat_interleave(filling, lim[filling])
            ft = torch.arange(len(fn)) - torch.repeat_interleave(torch.cumsum(lim[filling], 0) - lim[filling], lim[filling])
            j = pos[ft]
            fv = blk.at(j // T, j % T, fn).float()
            later = ct >= lim[cn]  # kept entries of these nodes beyond the first tokens (all of others)
            cn, ct, cv = torch.cat([fn, cn[later]]), torch.cat([ft, ct[later]]), torch.cat([fv, cv[later]])
        if len(cn):
            rows, keys, cols, _ = self._candidates(cn, ct, cv, c.k)
            self._merge("top", rows, off, keys, cols, pos, base, blk, valid)
        col, r, vals = idx[positive], tok[positive], val[positive]  # the active entries, in dense order
        n_pos = torch.bincount(col, minlength=n)
        s["active"][sl] += n_pos
        s["sum"][sl] += torch.zeros(n).index_add_(0, col, vals)
        seen = torch.bincount(idx.reshape(-1), minlength=n)  # kept entries (a kept 0 is a 0 too)
        mx = torch.full((n,), float("-inf")).scatter_reduce_(0, idx.reshape(-1), val.reshape(-1), "amax")
        mx = torch.where(seen < nv, mx.clamp_min(0), mx)  # a token where it is not kept: a 0
        s["max"][sl] = torch.maximum(s["max"][sl], mx)
        self._hist_and_reservoir(sl, n, nv, n_pos, r, col, vals, off, pos, base, blk, valid, row_offset)

    def _hist_and_reservoir(self, sl, n, nv, n_pos, r, col, vals, off, pos, base, blk, valid, row_offset) -> None:
        """What the dense and sparse blocks share once they have the active entries (token r,
        node col, value vals, in dense order): the histogram (bin 0: ≤ 0) and the reservoir of
        random examples (priority keys: one uniform key per active entry; only entries beating
        their node's kept r-th key are candidates)."""
        s, c = self.s, self.cfg
        nb = s["hist"].shape[1]
        s["hist"][sl] += torch.bincount(col * nb + torch.bucketize(vals, EDGES), minlength=n * nb).reshape(n, nb)
        s["hist"][sl, 0] += nv - n_pos
        g = torch.Generator().manual_seed(c.seed * 1_000_003 + row_offset * 7919 + off)
        keys = torch.rand(len(vals), generator=g)
        cand = keys > s["rnd_key"][sl].min(1).values[col]
        if cand.any():
            rows, kk, cols, src = self._candidates(col[cand], r[cand], keys[cand], c.r)
            self._merge("rnd", rows, off, kk, cols, pos, base, blk, valid, values=vals[cand][src])

    def step(self, model, rows: torch.Tensor, valid: torch.Tensor, row_offset: int) -> None:
        """One batch: the model's activations (TopK dictionaries sparse), then `update`."""
        blocks, patterns, vnorms = batch_activations(model, rows, blocks=True, sparse=True)
        self.update([x.cpu() for x in blocks], valid, [p.cpu() for p in patterns], [v.cpu() for v in vnorms], row_offset)

    def update(self, acts, valid: torch.Tensor, patterns: list, vnorms: list, row_offset: int):
        """acts [B, T, N] (or a list of column blocks [B, T, n_i] in node order) for rows
        row_offset.., valid [B, T] marks real tokens.

        Cost: a few passes over the real tokens' activations (max, sign, sum); the top-k and
        reservoir merges touch only nodes with a candidate beating their kept k-th (after the
        first batches, few); histogram and reservoir keys are computed for active entries only."""
        s, c = self.s, self.cfg
        B, T = valid.shape
        pos = valid.reshape(-1).nonzero().flatten()
        off = 0
        for blk in (acts if isinstance(acts, (list, tuple)) else [acts]):
            if len(pos):
                self._block(blk, off, valid, pos, row_offset)
            off += blk.shape[-1]
        s["n_tokens"] += len(pos)
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
        miner.step(model, rows[sl], valid[sl], b * cfg.batch)
        if work is not None and (miner.batches % every == 0 or miner.batches == n_batches):
            miner.save(work)
    miner.finish()
    return miner
