// The selected graph node: its incoming and outgoing edges sorted by |weight| (click to walk),
// its QK attribution when it is a head, pin / group / note controls.
import { useEffect, useState } from "react";
import type { Schemas } from "../api/client";
import { fmt } from "../format";
import { incoming, outgoing, type GEdge, type Group } from "./graphModel";

type State = { pins: string[]; groups: Group[]; notes: Record<string, string> };

export function GraphPanel({ id, node, edges, qk, state, onState, onSelect }: {
  id: string; node: Schemas["GraphNode"] | null; edges: GEdge[]; qk: Schemas["QKAttribution"] | null;
  state: State; onState: (patch: Partial<State>) => void; onSelect: (id: string) => void;
}) {
  const pinned = state.pins.includes(id);
  const [label, setLabel] = useState("");
  const [note, setNote] = useState(state.notes[id] ?? "");
  useEffect(() => setNote(state.notes[id] ?? ""), [id, state.notes[id]]);
  const group = state.groups.find((g) => g.ids.includes(id));
  const addToGroup = () => {
    const l = label.trim();
    if (!l) return;
    const others = state.groups.map((g) => ({ ...g, ids: g.ids.filter((x) => x !== id) })).filter((g) => g.ids.length > 0);
    const at = others.findIndex((g) => g.label === l);
    const groups = at >= 0 ? others.map((g, i) => (i === at ? { ...g, ids: [...g.ids, id] } : g)) : [...others, { label: l, ids: [id] }];
    onState({ groups, pins: pinned ? state.pins : [...state.pins, id] });
  };
  const list = (items: GEdge[], other: (e: GEdge) => string, testid: string) => (
    <ol className="edge-list" data-testid={testid}>
      {items.slice(0, 30).map((e) => (
        <li key={`${e.source}>${e.target}`}>
          <button type="button" className="linklike" onClick={() => onSelect(other(e))}>{other(e)}</button>{" "}
          <span className={e.weight >= 0 ? "pos" : "neg"}>{fmt(e.weight)}</span>
        </li>
      ))}
      {items.length > 30 && <li className="muted">… {items.length - 30} more</li>}
    </ol>
  );
  return (
    <aside className="graph-panel" data-testid="graph-panel">
      <h3>{id}</h3>
      {node?.label && <p data-testid="graph-node-label">{node.label}</p>}
      {node && <p className="muted">{node.kind} · activation {fmt(node.activation)} · influence {fmt(node.influence)}
        {node.input != null && <> · input {fmt(node.input)} (bias {fmt(node.bias ?? 0)})</>}</p>}
      <div className="row">
        <button type="button" data-testid="pin-node" onClick={() => onState({ pins: pinned ? state.pins.filter((p) => p !== id) : [...state.pins, id] })}>
          {pinned ? "unpin" : "pin"}
        </button>
        <input placeholder="supernode label" value={label} data-testid="group-label" onChange={(e) => setLabel(e.target.value)} />
        <button type="button" data-testid="group-add" onClick={addToGroup}>add to supernode</button>
        {group && <span className="muted"> in “{group.label}”</span>}
      </div>
      <label className="note">note <textarea value={note} data-testid="node-note" onChange={(e) => setNote(e.target.value)}
        onBlur={() => onState({ notes: note ? { ...state.notes, [id]: note } : Object.fromEntries(Object.entries(state.notes).filter(([k]) => k !== id)) })} /></label>
      <h4>incoming ({incoming(edges, id).length})</h4>
      {list(incoming(edges, id), (e) => e.source, "edges-in")}
      <h4>outgoing ({outgoing(edges, id).length})</h4>
      {list(outgoing(edges, id), (e) => e.target, "edges-out")}
      {qk && (
        <>
          <h4>why it attends @{qk.key} (score {fmt(qk.score)} = edges {fmt(qk.sum_edges)} + constant {fmt(qk.constant)})</h4>
          <ol className="edge-list" data-testid="qk-list">
            {qk.edges.map((e) => <li key={`${e.side}${e.source}`}>{e.side}: {e.source} <span className={e.weight >= 0 ? "pos" : "neg"}>{fmt(e.weight)}</span></li>)}
          </ol>
        </>
      )}
      {state.groups.length > 0 && (
        <>
          <h4>supernodes</h4>
          <ul data-testid="group-list">
            {state.groups.map((g) => (
              <li key={g.label}>{g.label}: {g.ids.join(", ")}{" "}
                <button type="button" className="linklike" onClick={() => onState({ groups: state.groups.filter((x) => x.label !== g.label) })}>ungroup</button></li>
            ))}
          </ul>
        </>
      )}
    </aside>
  );
}
