// Access tokens (server flag --auth-token-file): when the server answers 401, ask for a token
// once, keep it in this browser's localStorage, send it as `Authorization: Bearer` on every API
// call, and retry the refused call with it. Servers without access control never answer 401,
// so nothing changes for them.
import type { Middleware } from "openapi-fetch";

export const TOKEN_KEY = "circuit-debugger.token";

export function storedToken(): string | null {
  try {
    return window.localStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

function withToken(request: Request, token: string): Request {
  const headers = new Headers(request.headers);
  headers.set("Authorization", `Bearer ${token}`);
  return new Request(request, { headers });
}

const pending = new Map<string, Request>(); // request id -> an unread copy, for the one retry

export const accessToken: Middleware = {
  onRequest({ request, id }) {
    const token = storedToken();
    const out = token ? withToken(request, token) : request;
    pending.set(id, out.clone());
    return out;
  },
  async onResponse({ response, id }) {
    const copy = pending.get(id);
    pending.delete(id);
    if (response.status !== 401 || !copy) return undefined;
    const sent = copy.headers.get("Authorization");
    const stored = storedToken();
    // another call already got a token since this one left: use it without asking again
    const token =
      stored && sent !== `Bearer ${stored}`
        ? stored
        : window.prompt(sent ? "This access token was not accepted. Access token:" : "This server needs an access token:");
    if (!token || !token.trim()) return undefined;
    window.localStorage.setItem(TOKEN_KEY, token.trim());
    return fetch(withToken(copy, token.trim()));
  },
};
