// An attention pattern [query][key] drawn on a canvas (fast for long prompts), with the value
// under the pointer read out.
import { useEffect, useRef, useState } from "react";
import { showToken } from "../format";

export function Heatmap({ pattern, tokens, onPick }: { pattern: number[][]; tokens: string[]; onPick?: (q: number, k: number) => void }) {
  const ref = useRef<HTMLCanvasElement>(null);
  const n = pattern.length;
  const cell = Math.max(4, Math.min(22, Math.floor(340 / Math.max(n, 1))));
  const [hover, setHover] = useState<[number, number] | null>(null);
  useEffect(() => {
    const ctx = ref.current?.getContext("2d");
    if (!ctx) return;
    ctx.clearRect(0, 0, n * cell, n * cell);
    pattern.forEach((row, q) => row.forEach((v, k) => {
      ctx.fillStyle = `rgba(40, 90, 200, ${Math.max(0, Math.min(1, v)).toFixed(3)})`;
      ctx.fillRect(k * cell, q * cell, cell - (cell > 6 ? 1 : 0), cell - (cell > 6 ? 1 : 0));
    }));
  }, [pattern, cell, n]);
  const at = (e: React.MouseEvent): [number, number] | null => {
    const r = e.currentTarget.getBoundingClientRect();
    const k = Math.floor((e.clientX - r.left) / cell), q = Math.floor((e.clientY - r.top) / cell);
    return q >= 0 && q < n && k >= 0 && k <= q ? [q, k] : null;
  };
  return (
    <div className="heatmap" data-testid="attention-heatmap">
      <canvas ref={ref} width={n * cell} height={n * cell} role="img" aria-label="attention pattern, query rows by key columns"
        onMouseMove={(e) => setHover(at(e))} onMouseLeave={() => setHover(null)}
        onClick={(e) => { const p = at(e); if (p && onPick) onPick(p[0], p[1]); }} />
      <div className="readout">
        {hover ? <>query {hover[0]} <span className="tok">{showToken(tokens[hover[0]])}</span> → key {hover[1]}{" "}
          <span className="tok">{showToken(tokens[hover[1]])}</span>: {(pattern[hover[0]][hover[1]] * 100).toFixed(1)}%</> : "hover a cell; click to trace why"}
      </div>
    </div>
  );
}
