"""Generation under interventions: the model's continuation with and without the current
interventions, side by side, token by token with probabilities.

How interventions extend to generated tokens (each step reruns the whole sequence, so every
position sees the same hooks as in a one-shot forward):
- an intervention with positions acts at those *prompt* positions only (they keep their index
  as the sequence grows); generated tokens are never at those positions;
- an intervention without positions acts at every position, the prompt's and every generated
  token's (a steered neuron stays steered), except 'patch': the counterfactual prompt has only
  the prompt's positions, so an unpositioned patch acts at every prompt position.

Sampling: greedy (temperature 0), or Gumbel-max sampling at the given temperature from a
generator seeded with `seed`. The two runs draw the same noise at each step, so where their
distributions agree they pick the same token: differences come from the intervention.
Generation stops after `max_new_tokens`, at the model's context length, or after an
end-of-text token.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional, Sequence

import torch

from .cache import request_key
from .codec import HFCodec
from .errors import UserError
from .execution import RunRequest, execute


def extend_positions(ivs, prompt_len: int):
    """Interventions as they apply to a longer sequence (see the module docstring)."""
    return [replace(iv, positions=tuple(range(prompt_len))) if iv.op == "patch" and iv.positions is None else iv
            for iv in ivs]


def gumbel_choice(logits: torch.Tensor, temperature: float, gen: Optional[torch.Generator]) -> int:
    """argmax (greedy) or argmax(logits / T + Gumbel noise): a sample from softmax(logits / T)."""
    if temperature <= 0:
        return int(logits.argmax())
    u = torch.rand(logits.shape, generator=gen, dtype=torch.float64).clamp_(1e-12, 1 - 1e-12)
    return int((logits.double() / temperature - torch.log(-torch.log(u))).argmax())


class GenerationMixin:
    def generate(self, model: str, prompt: str, *, interventions: Sequence = (),
                 counterfactual_prompt: Optional[str] = None, reference_prompts: Optional[Sequence[str]] = None,
                 max_new_tokens: int = 16, temperature: float = 0.0, seed: int = 0, top: int = 5) -> dict:
        m = self.model(model)
        if not isinstance(m.codec, HFCodec):
            raise UserError(f"model {m.name!r} cannot generate text: its outputs are not its input tokens "
                            "(a tracr testbed); read its outputs per position instead")
        if not 1 <= max_new_tokens <= 64:
            raise UserError("max_new_tokens must be between 1 and 64")
        if not 0 <= temperature <= 10:
            raise UserError("temperature must be between 0 (greedy) and 10")
        if not 1 <= top <= 20:
            raise UserError("top must be between 1 and 20")
        ids = m.tokenize(prompt)
        room = m.max_tokens - len(ids)
        if room < 1:
            raise UserError(f"the prompt is {len(ids)} tokens, the model's limit here is {m.max_tokens}: "
                            "no room to generate", status=413)
        ivs = self._interventions(m, ids, interventions, counterfactual_prompt, reference_prompts)
        key = request_key("generate", m.name, ids, [str(i) + str(i.vector) for i in ivs], counterfactual_prompt,
                          reference_prompts, max_new_tokens, temperature, seed, top)
        hit = self._results.get(key)
        if hit is not None:
            return hit
        src = self._sources(m, ids, ivs, counterfactual_prompt, reference_prompts)
        choice = self._choice(m, ivs, "neurons", "heads")
        n = min(max_new_tokens, room)
        run = RunRequest(extend_positions(ivs, len(ids)), src, splice=choice)
        eos = getattr(m.codec.tokenizer, "eos_token_id", None)
        out = {"model": m.name, "prompt_tokens": m.codec.token_strs(ids), "interventions": [str(i) for i in ivs],
               "temperature": temperature, "seed": seed,
               "baseline": self._continue(m, ids, RunRequest(), n, temperature, seed, top, eos),
               "intervened": self._continue(m, ids, run, n, temperature, seed, top, eos) if ivs else None,
               "stopped_at_context": n < max_new_tokens}
        return self._results.put(key, out)

    @staticmethod
    def _continue(m, ids, run: RunRequest, n: int, temperature: float, seed: int, top: int, eos) -> list[dict]:
        seq, steps = list(ids), []
        gen = torch.Generator().manual_seed(seed)
        for _ in range(n):
            logits = execute(m, seq, run).logits[0, -1].float().cpu()
            if not bool(torch.isfinite(logits).all()):
                raise UserError("the interventions drove the model's outputs to NaN or infinity; use smaller values")
            probs = logits.softmax(-1)
            i = gumbel_choice(logits, temperature, gen)
            vals, idx = probs.topk(min(top, probs.numel()))
            steps.append({"token": m.codec.output_str(i), "id": i, "prob": float(probs[i]),
                          "top": [{"token": m.codec.output_str(int(j)), "id": int(j), "prob": float(v)}
                                  for v, j in zip(vals, idx)]})
            seq.append(i)
            if eos is not None and i == eos:
                break
        return steps
