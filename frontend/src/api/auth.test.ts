import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import createClient from "openapi-fetch";
import { accessToken, TOKEN_KEY } from "./auth";

type Seen = { auth: string | null; body: string };

function server(valid: string) {
  const seen: Seen[] = [];
  const fetchMock = vi.fn(async (input: RequestInfo | URL) => {
    const req = input as Request;
    const auth = req.headers.get("Authorization");
    seen.push({ auth, body: await req.text() });
    const ok = auth === `Bearer ${valid}`;
    return new Response(JSON.stringify(ok ? { ok: true } : { detail: "needs a token" }), {
      status: ok ? 200 : 401,
      headers: { "content-type": "application/json" },
    });
  });
  return { seen, fetchMock };
}

describe("access token middleware", () => {
  beforeEach(() => window.localStorage.clear());
  afterEach(() => vi.unstubAllGlobals());

  it("asks once on 401, keeps the token and retries the same call with it", async () => {
    const { seen, fetchMock } = server("s3cret");
    vi.stubGlobal("fetch", fetchMock);
    const prompt = vi.fn(() => "s3cret");
    vi.stubGlobal("prompt", prompt);
    const api = createClient<any>({ baseUrl: "http://x", fetch: fetchMock as any });
    api.use(accessToken);
    const first = await api.POST("/api/tokenize" as any, { body: { text: "Mary" } } as any);
    expect(first.response.status).toBe(200);
    expect(prompt).toHaveBeenCalledTimes(1);
    expect(seen.map((s) => s.auth)).toEqual([null, "Bearer s3cret"]);
    expect(seen[1].body).toBe(seen[0].body); // the retry carries the same body
    expect(window.localStorage.getItem(TOKEN_KEY)).toBe("s3cret");
    const second = await api.POST("/api/tokenize" as any, { body: { text: "John" } } as any);
    expect(second.response.status).toBe(200);
    expect(prompt).toHaveBeenCalledTimes(1); // not asked again
    expect(seen[2].auth).toBe("Bearer s3cret");
  });

  it("leaves the 401 as it is when no token is given", async () => {
    const { fetchMock } = server("s3cret");
    vi.stubGlobal("fetch", fetchMock);
    vi.stubGlobal("prompt", vi.fn(() => null));
    const api = createClient<any>({ baseUrl: "http://x", fetch: fetchMock as any });
    api.use(accessToken);
    const r = await api.POST("/api/tokenize" as any, { body: { text: "Mary" } } as any);
    expect(r.response.status).toBe(401);
    expect(window.localStorage.getItem(TOKEN_KEY)).toBeNull();
  });
});
