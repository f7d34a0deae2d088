#!/usr/bin/env bash
# Rebuild what ships with an embedded model, after its weights change:
#   autoencoders/MODEL/ (TopK transcoders, attention SAEs; llama also residual SAEs), their
#   metrics (autoencoders/MODEL/metrics.json and the table in autoencoders/README.md), and
#   explanations/MODEL.sqlite (mined examples, offline and head explanations).
# usage: scripts/build_dictionaries.sh default|llama        (needs `pip install -e 'backend[train]'`)
# Resumable: each step keeps its state under .cache/build-MODEL-<weights hash>/ and a rerun after an
# interruption continues there; new weights get a fresh folder. One thread per step (run the two
# models side by side on two cores). Env: TC_TOKENS (1000000), SAE_TOKENS (300000),
# METRICS_TOKENS (64000), MINE_TOKENS (60000), PYTHON (../.venv/bin/python from backend/).
set -euo pipefail
MODEL=${1:?usage: $0 default|llama}
cd "$(dirname "$0")/../backend"
PY=${PYTHON:-../.venv/bin/python}
export OMP_NUM_THREADS=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
HASH=$(sha256sum "circuit_debugger/models/$MODEL/model.safetensors" | cut -c1-12)
WORK=../.cache/build-$MODEL-$HASH
KINDS="sae"
[ "$MODEL" = llama ] && KINDS="sae resid"
COMMON=(--model "$MODEL" --latents 512 --auxk-alpha 0.03125 --lr 4e-3 --out "../autoencoders/$MODEL")
step() { echo "[$(date -u +%T)] $MODEL: $*"; }
mkdir -p "$WORK"
if [ ! -e "$WORK/tc.done" ]; then
  step "transcoders (${TC_TOKENS:-1000000} tokens)"
  "$PY" -m circuit_debugger.autoencoders.train "${COMMON[@]}" --kinds transcoder --tokens "${TC_TOKENS:-1000000}" --work "$WORK/tc"
  touch "$WORK/tc.done"
fi
if [ ! -e "$WORK/sae.done" ]; then
  step "$KINDS (${SAE_TOKENS:-300000} tokens)"
  # shellcheck disable=SC2086
  "$PY" -m circuit_debugger.autoencoders.train "${COMMON[@]}" --kinds $KINDS --tokens "${SAE_TOKENS:-300000}" --work "$WORK/sae"
  touch "$WORK/sae.done"
fi
step "metrics (${METRICS_TOKENS:-64000} tokens)"
"$PY" -m circuit_debugger.autoencoders.metrics --model "$MODEL" --tokens "${METRICS_TOKENS:-64000}" --write
step "explanations (${MINE_TOKENS:-60000} tokens)"
"$PY" -m circuit_debugger.explanations.build --model "$MODEL" --tokens "${MINE_TOKENS:-60000}" --work "$WORK/mine"
step "done: $(du -sh "../autoencoders/$MODEL" | cut -f1) dictionaries, $(du -h "../explanations/$MODEL.sqlite" | cut -f1) explanations"
