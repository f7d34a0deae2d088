// The MCP server writes UI links in Python (backend/circuit_debugger/server/mcp_links.py). This
// fixture holds a state and the string Python writes for it (tests/test_mcp.py checks Python still
// does): url.ts must write the very same string and read it back as the same state.
import { describe, expect, it } from "vitest";
import raw from "./url.python.fixture.json?raw";
import { decode, encode } from "./url";

const fixture = JSON.parse(raw);

describe("links written by the MCP server (Python)", () => {
  it("are the query string the UI writes", () => {
    expect(encode(fixture.state)).toBe(fixture.query);
  });
  it("decode to the same investigation", () => {
    expect(decode(fixture.query)).toEqual(fixture.state);
  });
});
