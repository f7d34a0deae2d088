"""An agent's investigation of the default model's IOI heads, through the MCP server (stdio), printed
as a Markdown transcript. The README's example transcript is this script's output.

    PYTHONPATH=backend .venv/bin/python scripts/mcp_example.py [--share-db FILE] > transcript.md

The "agent" is a fixed script (no LLM): each step picks its arguments from the previous results
(the top heads are read off the tool results, never written in), the way an agent would.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import anyio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

PROMPT = "When Mary and John went to the store, John gave a drink to"
WHY = {"prompt": PROMPT, "target": " Mary", "distractor": " John"}
IOI = {"builtin": "ioi", "n": 50, "seed": 0}


def show(name: str, args: dict, out: dict, keep: tuple[str, ...] | None = None) -> None:
    shown = {k: v for k, v in out.items() if keep is None or k in keep}
    print(f"**→ `{name}`** `{json.dumps(args, ensure_ascii=False)}`\n")
    if shown:
        print("```json\n" + fmt(shown) + "\n```\n")


def fmt(out: dict) -> str:
    """JSON, one key per line, lists of objects one object per line (short enough to read)."""
    def one(v) -> str:
        return json.dumps(v, ensure_ascii=False)

    lines = []
    for k, v in out.items():
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            v_text = "[\n" + ",\n".join("   " + one(x) for x in v) + "\n  ]"
        else:
            v_text = one(v)
        lines.append(f"  {one(k)}: {v_text}")
    return "{\n" + ",\n".join(lines) + "\n}"


async def main(share_db: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server = StdioServerParameters(command=sys.executable, env=env,
                                   args=["-m", "circuit_debugger.cli", "mcp", "--share-db", share_db])
    with open(os.devnull, "w") as quiet:
        async with stdio_client(server, errlog=quiet) as (read, write), ClientSession(read, write) as s:
            await s.initialize()

            async def call(name: str, args: dict, keep=None, say: str = "") -> dict:
                res = await s.call_tool(name, args)
                if res.is_error:
                    raise SystemExit(f"{name}: {res.content[0].text}")
                out = json.loads(res.content[0].text)
                if say:
                    print(say + "\n")
                show(name, args, out, keep)
                return out

            models = await call("list_models", {}, keep=(), say="The agent looks at what is loaded.")
            m = models["models"][0]
            print(f"(`{m['name']}`: {m['n_layers']} layers × {m['n_heads']} heads, d_model {m['d_model']}, "
                  f"transcoders and SAEs on layers {', '.join(m['transcoders'])})\n")
            await call("attribute", {**WHY, "node_kind": "head", "rows": 4},
                       keep=("logit_diff", "nodes_by_abs_total_effect", "more", "link"),
                       say="Why ' Mary' and not ' John'? Heads only, by |total effect|.")
            ds = await call("dataset_attribute", {"promptset": IOI, "node_kind": "head", "rows": 12},
                            keep=("n_prompts", "metric_mean"),
                            say="One prompt can mislead: the same question over 50 IOI prompts (all 12 heads).")
            ranked = [n["id"] for n in ds["nodes_by_mean_total_effect"]]
            print("Heads by |mean total effect|: " + ", ".join(
                f"`{n['id']}` {n['total_mean']:+.2f}" for n in ds["nodes_by_mean_total_effect"]) + "\n")
            top = ranked[0]
            await call("attention", {"prompt": PROMPT, "layer": int(top[1:top.index(".")]),
                                     "head": int(top.split(".H")[1]), "rows": 3},
                       keep=("from_last_token_top_keys", "link"), say=f"Where does {top} look from the last token?")
            await call("intervene", {**WHY, "interventions": [{"node": top, "op": "zero"}]},
                       keep=("logit_diff", "baseline_logit_diff", "change"), say=f"Zero-ablate {top} on this prompt.")
            top3 = await call("evaluate_circuit", {"promptset": IOI, "nodes": ranked[:3], "n_random": 0,
                                                   "greedy_steps": 0}, keep=("nodes", "faithfulness"),
                              say="Are the top three heads a circuit for IOI (every other head mean-ablated)?")
            circuit = ranked[:3]
            enough = (top3["faithfulness"]["normalized"] or 0) >= 0.9
            print("Yes: normalized faithfulness is already at least 0.9.\n" if enough else
                  "Not nearly. The agent adds heads in order of |mean total effect| until normalized "
                  "faithfulness reaches 0.9:\n")
            for head in ([] if enough else ranked[3:]):
                circuit = circuit + [head]
                res = await s.call_tool("evaluate_circuit", {"promptset": IOI, "nodes": circuit, "n_random": 0,
                                                             "greedy_steps": 0})
                f = json.loads(res.content[0].text)["faithfulness"]
                print(f"- +`{head}` → normalized faithfulness {f['normalized']:.3f}")
                if f["normalized"] is not None and f["normalized"] >= 0.9:
                    break
            print()
            full = await call("evaluate_circuit", {"promptset": IOI, "nodes": circuit, "n_random": 5, "greedy_steps": 2},
                              keep=("faithfulness", "completeness", "minimality"),
                              say="Minimality says which of these heads matter. The agent tries dropping each, least "
                                  "minimal first, and keeps a drop when normalized faithfulness stays ≥ 0.9:")
            for item in sorted(full["minimality"], key=lambda x: x["relative"]):
                trial = [n for n in circuit if n != item["node"]]
                if not trial:  # the last head left: a circuit needs at least one
                    print(f"- `{item['node']}` is the last head left: kept")
                    continue
                res = await s.call_tool("evaluate_circuit", {"promptset": IOI, "nodes": trial, "n_random": 0,
                                                             "greedy_steps": 0})
                f = json.loads(res.content[0].text)["faithfulness"]
                kept = f["normalized"] is not None and f["normalized"] >= 0.9
                print(f"- −`{item['node']}` (minimality {item['relative']:.3f}) → {f['normalized']:.3f}: "
                      + ("dropped" if kept else "kept"))
                if kept:
                    circuit = trial
            print()
            circ = await call("evaluate_circuit", {"promptset": IOI, "nodes": circuit, "n_random": 5, "greedy_steps": 2},
                              keep=("nodes", "faithfulness", "completeness", "minimality", "link"),
                              say="The pruned circuit, evaluated in full:")
            await call("create_share", {"state": circ["share_state"]}, keep=("id", "link"),
                       say="Save it for a person to open.")

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--share-db", default=os.path.join(tempfile.mkdtemp(), "investigations.sqlite"))
    anyio.run(main, ap.parse_args().share_db)
