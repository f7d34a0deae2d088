// Number formatting and the diverging colour scale shared by the table, tokens and heatmaps.
export const fmt = (x: number | null | undefined, digits = 3): string =>
  x === null || x === undefined || Number.isNaN(x) ? "–" : x.toFixed(digits);

/** A change too small to show at this precision is neutral, not coloured. */
export const changeClass = (x: number, digits = 3): string => (Math.abs(x) < 0.5 * 10 ** -digits ? "zero" : x < 0 ? "neg" : "pos");

export const signed = (x: number | null | undefined, digits = 3): string =>
  x === null || x === undefined ? "–" : (x > 0 ? "+" : "") + x.toFixed(digits);

/** Blue for negative, red for positive; |x| = scale gives full colour. */
export function diverging(x: number | null | undefined, scale: number): string {
  if (x === null || x === undefined || !scale) return "transparent";
  const t = Math.max(-1, Math.min(1, x / scale));
  const a = Math.abs(t) * 0.75;
  return t >= 0 ? `rgba(220, 60, 40, ${a.toFixed(3)})` : `rgba(40, 100, 220, ${a.toFixed(3)})`;
}

/** Show whitespace in token strings so ' Mary' and 'Mary' differ visibly. */
export const showToken = (t: string | null | undefined): string =>
  t === null || t === undefined ? "" : t.replace(/ /g, "·").replace(/\n/g, "⏎");

export const maxAbs = (xs: Array<number | null | undefined>): number =>
  xs.reduce<number>((m, x) => (x === null || x === undefined ? m : Math.max(m, Math.abs(x))), 0);

/** The same word with the other leading spacing ('Mary' vs ' Mary')? */
export const otherSpacing = (a: string, b: string): boolean => a !== b && a.trim() === b.trim() && a.trim() !== "";

/** Server messages in human words: API field names become what the page calls them. */
const FIELD_WORDS: Record<string, string> = {
  counterfactual_prompt: "counterfactual prompt", reference_prompts: "reference prompts", top_k: "rows", mlp_basis: "MLP basis",
  attn_basis: "attention basis", verify_top: "verified rows", max_new_tokens: "tokens to generate", ig_steps: "IG steps",
};
export const humanize = (msg: string): string =>
  msg.replace(/\b(counterfactual_prompt|reference_prompts|top_k|mlp_basis|attn_basis|verify_top|max_new_tokens|ig_steps)\b/g, (k) => FIELD_WORDS[k])
    .replace(/^interventions\.(\d+)\./, (_, i) => `intervention ${Number(i) + 1}: `)
    .replace(/^internal error: .*/s, "the server failed on this request (see its log)");
