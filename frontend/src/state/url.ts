// The URL encodes the whole investigation. Format `v=1`: one query parameter per field, lists
// as JSON. Later fields (sort, effects column, circuit evaluation) are optional parameters an
// older reader ignores, so the format stays v=1. Decoding never throws: unknown versions and bad fields fall back to defaults, and
// every older version is migrated to the current one.
import type { InvestigationState } from "../api/client";

export const VERSION = 1;

export function defaults(): InvestigationState {
  return {
    v: 1, model: "default", prompt: "", target: "", distractor: "", interventions: [],
    counterfactual_prompt: "", compare_prompt: "", node: null, view: "table", traces: [],
    mlp_basis: "neurons", attn_basis: "heads", granularity: "component", top_k: 100, kind_filter: "", search: "",
    dataset: null, circuit: [], graph: null,
    sort: "", effects: "", effects_neurons: false, ig_steps: 16, circuit_eval: "", resid_basis: "none",
  };
}

const TEXT = ["model", "prompt", "target", "distractor", "counterfactual_prompt", "compare_prompt", "kind_filter", "search"] as const;
const SHORT: Record<string, string> = { prompt: "p", target: "a", distractor: "b", counterfactual_prompt: "cf", compare_prompt: "cmp", kind_filter: "kind", search: "q", model: "model" };

export function encode(s: InvestigationState): string {
  const d = defaults();
  const q = new URLSearchParams();
  q.set("v", String(VERSION));
  for (const k of TEXT) if (s[k] !== d[k]) q.set(SHORT[k], s[k] as string);
  if (s.interventions.length) q.set("iv", JSON.stringify(s.interventions));
  if (s.traces.length) q.set("tr", JSON.stringify(s.traces));
  if (s.node) q.set("node", s.node);
  if (s.view !== d.view) q.set("view", s.view);
  if (s.mlp_basis !== d.mlp_basis) q.set("mlp", s.mlp_basis);
  if (s.attn_basis !== d.attn_basis) q.set("attn", s.attn_basis);
  if (s.granularity !== d.granularity) q.set("gran", s.granularity);
  if (s.top_k !== d.top_k) q.set("k", String(s.top_k));
  if (s.dataset) q.set("ds", JSON.stringify(s.dataset));
  if (s.circuit.length) q.set("circ", s.circuit.join(","));
  if (s.graph) q.set("g", JSON.stringify(s.graph));
  if (s.sort) q.set("sort", s.sort);
  if (s.effects) q.set("fx", s.effects);
  if (s.effects_neurons) q.set("fxn", "1");
  if (s.ig_steps != null && s.ig_steps !== d.ig_steps) q.set("ig", String(s.ig_steps));
  if (s.circuit_eval) q.set("ce", s.circuit_eval);
  if (s.resid_basis && s.resid_basis !== d.resid_basis) q.set("res", s.resid_basis);
  return q.toString();
}

function json<T>(text: string | null, fallback: T, ok: (x: unknown) => boolean): T {
  if (!text) return fallback;
  try {
    const x = JSON.parse(text);
    return ok(x) ? (x as T) : fallback;
  } catch {
    return fallback;
  }
}

const oneOf = <T extends string>(x: string | null, allowed: readonly T[], fallback: T): T =>
  x !== null && (allowed as readonly string[]).includes(x) ? (x as T) : fallback;

/** Decode any version of the URL format into the current state. */
export function decode(search: string): InvestigationState {
  const q = new URLSearchParams(search);
  const version = Number(q.get("v") ?? VERSION);
  const s = defaults();
  if (!Number.isInteger(version) || version < 1 || version > VERSION) return s;
  for (const k of TEXT) {
    const x = q.get(SHORT[k]);
    if (x !== null) (s as Record<string, unknown>)[k] = x;
  }
  const isList = (x: unknown) => Array.isArray(x) && x.every((i) => typeof i === "object" && i !== null);
  s.interventions = json(q.get("iv"), [], isList);
  s.traces = json(q.get("tr"), [], isList);
  s.node = q.get("node") || null;
  s.view = oneOf(q.get("view"), ["table", "graph", "compare", "dataset"] as const, "table");
  s.dataset = json(q.get("ds"), null, (x) => typeof x === "object" && x !== null && !Array.isArray(x));
  s.circuit = (q.get("circ") ?? "").split(",").filter((x) => x.length > 0);
  s.graph = json(q.get("g"), null, (x) => typeof x === "object" && x !== null && !Array.isArray(x));
  s.mlp_basis = oneOf(q.get("mlp"), ["neurons", "transcoders"] as const, "neurons");
  s.attn_basis = oneOf(q.get("attn"), ["heads", "saes"] as const, "heads");
  s.granularity = oneOf(q.get("gran"), ["component", "position"] as const, "component");
  const k = Number(q.get("k") ?? s.top_k);
  s.top_k = Number.isInteger(k) && k >= 0 && k <= 100000 ? k : 100;
  const sort = q.get("sort") ?? "";
  s.sort = /^[a-z_]+:(asc|desc)$/.test(sort) ? sort : "";
  s.effects = oneOf(q.get("fx"), ["", "zero", "mean"] as const, "");
  s.effects_neurons = q.get("fxn") === "1";
  const ig = Number(q.get("ig") ?? 16);
  s.ig_steps = Number.isInteger(ig) && ig >= 0 && ig <= 64 ? ig : 16;
  s.circuit_eval = oneOf(q.get("ce"), ["", "mean", "resample"] as const, "");
  s.resid_basis = oneOf(q.get("res"), ["none", "saes"] as const, "none");
  return s;
}
