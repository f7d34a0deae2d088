// An attention pattern [query][key] drawn on a canvas (fast for long prompts), with token
// labels on both axes (every one when they fit, else every k-th), the value under the pointer
// read out, and the selected key column outlined.
import { useEffect, useRef, useState } from "react";
import { showToken } from "../format";

export function Heatmap({ pattern, tokens, onPick, onHover, selectedKey, testid = "attention-heatmap" }: {
  pattern: number[][]; tokens: string[]; onPick?: (q: number, k: number) => void; onHover?: (q: number, k: number) => void;
  selectedKey?: number | null; testid?: string;
}) {
  const ref = useRef<HTMLCanvasElement>(null);
  const n = pattern.length;
  const cell = Math.max(4, Math.min(22, Math.floor(300 / Math.max(n, 1))));
  const every = Math.max(1, Math.ceil(11 / cell));  // labels need ~11px each
  const [hover, setHover] = useState<[number, number] | null>(null);
  useEffect(() => {
    const ctx = ref.current?.getContext("2d");
    if (!ctx) return;
    ctx.clearRect(0, 0, n * cell, n * cell);
    pattern.forEach((row, q) => row.forEach((v, k) => {
      ctx.fillStyle = `rgba(40, 90, 200, ${Math.max(0, Math.min(1, v)).toFixed(3)})`;
      ctx.fillRect(k * cell, q * cell, cell - (cell > 6 ? 1 : 0), cell - (cell > 6 ? 1 : 0));
    }));
    if (selectedKey != null && selectedKey < n) {
      ctx.strokeStyle = "#f90";
      ctx.lineWidth = 2;
      ctx.strokeRect(selectedKey * cell + 1, 1, cell - 2, n * cell - 2);
    }
  }, [pattern, cell, n, selectedKey]);
  const at = (e: React.MouseEvent): [number, number] | null => {
    const r = e.currentTarget.getBoundingClientRect();
    const k = Math.floor((e.clientX - r.left) / cell), q = Math.floor((e.clientY - r.top) / cell);
    return q >= 0 && q < n && k >= 0 && k <= q ? [q, k] : null;
  };
  const label = (i: number) => (i % every === 0 ? showToken(tokens[i]) : "");
  return (
    <div className="heatmap" data-testid={testid}>
      <div className="hm-grid" style={{ gridTemplateColumns: `auto ${n * cell}px` }}>
        <span />
        <div className="hm-keys" style={{ height: 64 }} aria-hidden="true">
          {tokens.slice(0, n).map((_, k) => (
            <span key={k} className="hm-key" style={{ left: k * cell + cell / 2, fontWeight: k === selectedKey ? 700 : 400 }}
              data-testid="hm-key-label">{label(k)}</span>
          ))}
        </div>
        <div className="hm-queries" aria-hidden="true">
          {tokens.slice(0, n).map((_, q) => (
            <span key={q} style={{ height: cell, lineHeight: `${cell}px`, fontSize: Math.min(11, cell) }} data-testid="hm-query-label">{label(q)}</span>
          ))}
        </div>
        <canvas ref={ref} width={n * cell} height={n * cell} role="img" aria-label="attention pattern, query rows by key columns"
          onMouseMove={(e) => { const p = at(e); setHover(p); if (p && onHover) onHover(p[0], p[1]); }} onMouseLeave={() => setHover(null)}
          onClick={(e) => { const p = at(e); if (p && onPick) onPick(p[0], p[1]); }} />
      </div>
      <div className="readout">
        {hover ? <>query {hover[0]} <span className="tok">{showToken(tokens[hover[0]])}</span> → key {hover[1]}{" "}
          <span className="tok">{showToken(tokens[hover[1]])}</span>: {(pattern[hover[0]][hover[1]] * 100).toFixed(1)}%</> : "hover a cell; click to trace why"}
      </div>
    </div>
  );
}
