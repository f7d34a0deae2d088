// The dictionaries a question's table splices in (its bases). Every request whose numbers must
// agree with the table's — the node panel's values, the compare view's two tables — sends the
// same three fields, taken from the investigation state by `basesOf` (one place, so a new basis
// cannot be forgotten by one of them; the residual basis once was).
export type Bases = {
  mlp_basis: "neurons" | "transcoders";
  attn_basis: "heads" | "saes";
  resid_basis: "none" | "saes";
};

export function basesOf(s: Partial<Bases>): Bases {
  return {
    mlp_basis: s.mlp_basis ?? "neurons",
    attn_basis: s.attn_basis ?? "heads",
    resid_basis: s.resid_basis ?? "none",
  };
}
