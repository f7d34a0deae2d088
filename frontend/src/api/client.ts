// The one API client: typed by the generated schema.ts, errors turned into ApiError with the
// server's own message.
import createClient from "openapi-fetch";
import { accessToken } from "./auth";
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];
export type AttributeResponse = Schemas["AttributeResponse"];
export type NodeRow = Schemas["NodeRow"];
export type Intervention = Schemas["InterventionIn"];
/** The UI's state: the share schema with every field present. */
export type InvestigationState = Required<Schemas["InvestigationState"]>;
export type TraceTarget = InvestigationState["traces"][number];

export const api = createClient<paths>({ baseUrl: "" });
api.use(accessToken);

export class ApiError extends Error {
  constructor(message: string, readonly status: number) {
    super(message);
  }
}

type Result<T> = { data?: T; error?: unknown; response: Response };

/** Unwrap an openapi-fetch result: the data, or an ApiError carrying the server's `detail`. */
export async function unwrap<T>(call: Promise<Result<T>>): Promise<T> {
  const { data, error, response } = await call;
  if (response.ok && data !== undefined) return data;
  const detail = (error as { detail?: unknown } | undefined)?.detail;
  const text = typeof detail === "string" ? detail : detail ? JSON.stringify(detail) : response.statusText;
  throw new ApiError(text || `request failed (${response.status})`, response.status);
}
