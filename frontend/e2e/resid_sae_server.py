"""E2E server for the residual-basis control: the default model plus one residual-stream SAE
(SAELens layout, random weights, on hook_resid_pre of layer 2) written to a temporary folder,
then `circuit-debugger serve` on the port given. The default model ships no residual SAE."""

import json
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from circuit_debugger.cli import main
from circuit_debugger.loading import load_model

port, share_db = sys.argv[1], sys.argv[2]
d, F = load_model("default").shape.d_model, 64
g = torch.Generator().manual_seed(0)
folder = Path(tempfile.mkdtemp(prefix="cd-e2e-resid-")) / "res2"
folder.mkdir()
(folder / "cfg.json").write_text(json.dumps({"architecture": "standard", "hook_name": "blocks.2.hook_resid_pre"}))
save_file({"W_enc": torch.randn(d, F, generator=g) * d ** -0.5, "b_enc": torch.zeros(F),
           "W_dec": (torch.randn(F, d, generator=g) * F ** -0.5).contiguous(), "b_dec": torch.zeros(d)},
          str(folder / "sae_weights.safetensors"))
main(["serve", "--model", "default", "--autoencoders", f"default={folder}", "--port", port, "--share-db", share_db])
