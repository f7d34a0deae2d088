// Number formatting and the diverging colour scale shared by the table, tokens and heatmaps.
export const fmt = (x: number | null | undefined, digits = 3): string =>
  x === null || x === undefined || Number.isNaN(x) ? "–" : x.toFixed(digits);

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
