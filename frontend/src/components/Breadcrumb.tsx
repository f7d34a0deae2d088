// Where a trace came from: the question, then each upstream step; click one to go back.
import type { TraceTarget } from "../api/client";

export const traceLabel = (t: TraceTarget): string => {
  if (t.kind === "attention") return `why ${t.node} attends ${t.query ?? "last"}→${t.key} (attention score, via ${t.through})`;
  if (t.kind === "head_output") return `${t.node} output along ${t.direction_node ?? "direction"}`;
  return `${t.node}${t.position != null ? "@" + t.position : ""} pre-activation`;
};

export function Breadcrumb({ traces, onGo }: { traces: TraceTarget[]; onGo: (depth: number) => void }) {
  if (!traces.length) return null;
  return (
    <nav className="breadcrumb" aria-label="trace" data-testid="breadcrumb">
      <button type="button" className="link" onClick={() => onGo(0)}>question</button>
      {traces.map((t, i) => (
        <span key={i}> › {i === traces.length - 1 ? <b>{traceLabel(t)}</b> :
          <button type="button" className="link" onClick={() => onGo(i + 1)}>{traceLabel(t)}</button>}</span>
      ))}
    </nav>
  );
}
