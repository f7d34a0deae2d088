"""Debugger methods for inspection: outputs, ground truth, tokens, attention, logit lens."""

from __future__ import annotations

from typing import Optional

import torch

from .cache import request_key
from .errors import NotFound, UserError
from .ground_truth import ground_truth
from .linear import write_vector
from .autoencoders.splice import latent_key
from .nodes import LATENT_KINDS, NEURON, RESID, RESID_SAE, RESID_SAE_ERR, SAE_ERR, TRANSCODER, TRANSCODER_ERR, parse_node, \
    pattern_hook, validate
from .targets import check_position


class InspectionMixin:
    # ------------------------------------------------------------------ inspect
    def outputs(self, model: str, prompt: str) -> dict:
        """What the model outputs at every position: the top token (numerical testbeds: the value)."""
        m = self.model(model)
        ids = m.tokenize(prompt)
        logits = self.clean_pass(m, ids)["logits"][0]
        if m.d_vocab_out == 1:
            outs = [{"token": m.codec.output_str(0), "value": float(v)} for v in logits[:, 0]]
        else:
            probs = logits.softmax(-1)
            top = probs.argmax(-1)
            outs = [{"token": m.codec.output_str(int(t)), "value": float(probs[i, t])} for i, t in enumerate(top)]
        return {"model": m.name, "tokens": m.codec.token_strs(ids), "outputs": outs,
                "numerical": m.d_vocab_out == 1}

    def ground_truth(self, model: str) -> dict:
        """A testbed's RASP ops, the nodes implementing each, and a label per node."""
        m = self.model(model)
        gt = ground_truth(m)
        if gt is None:
            raise NotFound(f"model {model!r} has no ground truth (only tracr testbeds do)")
        return {**gt.data, "node_labels": {n: gt.label(n) for n in sorted(gt.labels)}}

    def tokenize(self, model: str, text: str, kind: str = "prompt") -> dict:
        """`prompt`: as the model reads it (BOS first where the model uses one). `output`: as
        a target or distractor, which must be one output token (else the 422 says why)."""
        m = self.model(model)
        if kind == "output":
            i = m.codec.output_token(text)
            return {"model": m.name, "token_ids": [i], "tokens": [m.codec.output_str(i)]}
        ids = m.tokenize(text)
        return {"model": m.name, "token_ids": ids, "tokens": m.codec.token_strs(ids), "display": self.readable_tokens(m, ids)}

    def attention(self, model: str, prompt: str, layer: int, head: Optional[int] = None) -> dict:
        m = self.model(model)
        ids = m.tokenize(prompt)
        if not 0 <= layer < m.shape.n_layers:
            raise UserError(f"layer {layer} out of range (model has layers 0..{m.shape.n_layers - 1})")
        if head is not None and not 0 <= head < m.shape.n_heads:
            raise UserError(f"head {head} out of range (layer has heads 0..{m.shape.n_heads - 1})")
        pat = self.clean_pass(m, ids)[pattern_hook(layer)][0]
        heads = range(m.shape.n_heads) if head is None else [head]
        return {"model": m.name, "tokens": m.codec.token_strs(ids), "layer": layer,
                "heads": {f"L{layer}.H{h}": pat[h].tolist() for h in heads}}

    def logit_lens(self, model: str, node: str, prompt: Optional[str] = None, position: Optional[int] = None,
                   k: int = 10) -> dict:
        """Tokens a node's write promotes and suppresses through the unembedding (final LN gain
        applied, its scale left out: it does not change the ranking)."""
        m = self.model(model)
        if not 1 <= k <= 200:
            raise UserError("k must be between 1 and 200")
        n = parse_node(node)
        if n.kind == RESID:
            raise UserError("logit lens of L{l}.RESID is not a node write; use a head, neuron, sublayer or embedding")
        k = min(k, m.d_vocab_out)  # small testbed vocabularies have fewer output tokens than k
        if n.kind == NEURON and prompt is None:
            validate(n, m.shape)
            from .linear import post_norm

            vec, where = post_norm(m, "mlp", n.layer, m.W.W_out[n.layer, n.index][None], None, [0])[0], "weights (W_out row)"
        elif n.kind in LATENT_KINDS:
            # a latent writes activation × its decoder row: the row's direction is the lens
            # (activations are non-negative), with or without a prompt; through the sublayer's
            # post-norm gain where the architecture has one
            from .linear import post_norm

            validate(n, m.shape, latents=m.autoencoders.sizes())
            row = m.autoencoders.family(n.kind)[n.layer].W_dec[n.index].to(m.W.W_U.dtype)
            vec = row if n.kind == RESID_SAE else \
                post_norm(m, "mlp" if n.kind == TRANSCODER else "attn", n.layer, row[None], None, [0])[0]
            where = "weights (decoder row)"
        else:
            if prompt is None:
                raise UserError(f"logit lens of {n} needs a prompt (its write depends on the input)")
            ids = m.tokenize(prompt)
            validate(n, m.shape, len(ids), latents=m.autoencoders.sizes())
            pos = check_position(position if n.position is None else n.position, len(ids))
            acts = self.clean_pass(m, ids)
            if n.kind in (TRANSCODER_ERR, SAE_ERR, RESID_SAE_ERR):  # what the autoencoder misses (the clean pass splices every one)
                vec = acts[latent_key(n.kind, n.layer)][0, pos].detach().to(m.W.W_U.dtype)
            else:
                try:
                    vec = write_vector(m, n.component, acts, pos)
                except KeyError:
                    raise UserError(f"this model has no {n.component} node (its architecture has no such write)") from None
            where = f"write at position {pos}"
        if "ln_final" in m.W.ln:
            from .linear import centre

            vec = centre(m, vec) * m.W.ln["ln_final"][0]
        logits = vec @ m.W.W_U
        top, bot = logits.topk(k), (-logits).topk(k)
        fmt = lambda vals, idx, sign: [{"token": m.codec.output_str(int(i)), "id": int(i), "value": sign * float(v)}
                                       for v, i in zip(vals, idx)]
        return {"model": m.name, "node": str(n), "source": where, "promoted": fmt(top.values, top.indices, 1),
                "suppressed": fmt(bot.values, bot.indices, -1)}

    def activations(self, model: str, prompt: str, node: str) -> dict:
        """One node's activation at every token of the prompt (the columns the miner uses, so
        values match the explanation's examples)."""
        from .explanations.activations import batch_activations, node_index

        m = self.model(model)
        n = validate(parse_node(node), m.shape, latents=m.autoencoders.sizes())
        if n.position is not None:
            raise UserError(f"node {n}: give the node without a position; every position is returned")
        index = node_index(m)
        if str(n) not in index.ids:
            raise UserError(f"node {n}: per-token activations exist for heads, neurons and latents")
        ids = m.tokenize(prompt)
        key = request_key("activations", m.name, ids)
        acts = self._clean.get(key)
        if acts is None:  # every node's activations for this prompt: the next node asked for is free
            acts = self._clean.put(key, batch_activations(m, torch.tensor([ids]))[0][0])
        values = acts[:, index.ids.index(str(n))].tolist()
        return {"model": m.name, "node": str(n), "tokens": m.codec.token_strs(ids), "values": values}
