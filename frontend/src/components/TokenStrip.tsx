// Tokens coloured by a value per token (activations over the prompt, example windows).
import { diverging, maxAbs, showToken } from "../format";

export function TokenStrip({ tokens, values, scale, center, testid }: {
  tokens: Array<string | null>; values: Array<number | null>; scale?: number; center?: number; testid?: string;
}) {
  const s = scale ?? maxAbs(values);
  return (
    <div className="strip" data-testid={testid}>
      {tokens.map((t, i) => t === null ? null : (
        <span key={i} className={"tok" + (i === center ? " center" : "")} style={{ background: diverging(values[i], s) }}
          title={`position ${i}: ${values[i] === null ? "–" : values[i]!.toFixed(3)}`}>{showToken(t)}</span>
      ))}
    </div>
  );
}
