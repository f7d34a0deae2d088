// The node address as the server writes it (L1.H3, L0.N17@5, L1.T300, EMB@2 ...), parsed just
// enough to offer the right panels and actions; the server validates everything.
export type ParsedNode = { id: string; base: string; layer: number | null; letter: string; index: number | null; position: number | null };

export function parseNode(id: string): ParsedNode {
  const [base, pos] = id.split("@");
  const m = base.match(/^L(\d+)\.([A-Z]+)(\d*)$/);
  const position = pos !== undefined && /^\d+$/.test(pos) ? Number(pos) : null;
  if (!m) return { id, base, layer: null, letter: base, index: null, position };
  return { id, base, layer: Number(m[1]), letter: m[2], index: m[3] ? Number(m[3]) : null, position };
}

export const isHead = (n: ParsedNode) => n.letter === "H" && n.index !== null;
export const isNeuron = (n: ParsedNode) => n.letter === "N" && n.index !== null;
export const isLatent = (n: ParsedNode) => (n.letter === "T" || n.letter === "S" || n.letter === "R") && n.index !== null;
