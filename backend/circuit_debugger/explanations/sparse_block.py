"""TopK latents of one dictionary for one batch, kept as their k nonzero entries per token.

Why: a TopK dictionary of 24,576 latents with k = 64 is 99.7% zeros; written out dense, one
batch of 256 tokens is 6.3 M floats per layer, and every statistic would pass over all of
them. Kept sparse, the miner's statistics (mine.py `Miner._sparse_block`) touch only the k
entries per token, and give the state the dense block gives (tests/test_mine_sparse.py):
every entry not kept is exactly 0 in the dense block, which the statistics account for
(density, histogram bin 0, the max being at least 0 unless a latent is active everywhere).

Entries are sorted by latent within each token, so iterating (token, latent) pairs in
row-major order visits them in the order `nonzero()` of the dense block would.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SparseBlock:
    idx: torch.Tensor  # [B*T, k] latent indices, ascending within each row
    val: torch.Tensor  # [B*T, k] their activations (>= 0; 0 where fewer than k are positive)
    B: int
    T: int
    n: int  # latents in the dictionary

    @property
    def shape(self) -> tuple:
        return (self.B, self.T, self.n)

    @classmethod
    def topk(cls, ae, x: torch.Tensor) -> "SparseBlock":
        """Encode x [B, T, d] with TopK dictionary `ae`: the same activations as `ae.encode`
        (ReLU, then the k largest), without the dense [B, T, n] tensor. Taking the k largest
        pre-activations and then the ReLU selects, up to which zeros, the same entries."""
        B, T = x.shape[:2]
        pre = ae.pre(x).reshape(B * T, -1)
        top = pre.topk(ae.k, dim=-1, sorted=False)
        idx, order = top.indices.sort(dim=-1)
        return cls(idx, top.values.gather(-1, order).clamp_min_(0), B, T, pre.shape[-1])

    def cpu(self) -> "SparseBlock":
        return SparseBlock(self.idx.cpu(), self.val.cpu(), self.B, self.T, self.n)

    def dense(self) -> torch.Tensor:
        out = torch.zeros(self.B * self.T, self.n, dtype=self.val.dtype)
        return out.scatter_(1, self.idx, self.val).reshape(self.B, self.T, self.n)

    def at(self, b: torch.Tensor, t: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """Activation of `latent` at (b, t) (broadcast together), 0 where it is not kept: a
        binary search in the kept entries' keys position·n + latent, which are ascending."""
        p = (b * self.T + t).expand(torch.broadcast_shapes(b.shape, t.shape, latent.shape))
        keys = (torch.arange(self.B * self.T)[:, None] * self.n + self.idx).reshape(-1)
        want = p * self.n + latent.expand(p.shape)
        i = torch.searchsorted(keys, want.reshape(-1)).clamp_(max=len(keys) - 1)
        hit = keys[i] == want.reshape(-1)
        return torch.where(hit, self.val.reshape(-1)[i], torch.zeros((), dtype=self.val.dtype)).reshape(p.shape)


__all__ = ["SparseBlock"]
