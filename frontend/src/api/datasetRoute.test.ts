import { describe, expect, it } from "vitest";
import { datasetRoute, runsAsJob } from "./datasetRoute";

describe("runsAsJob", () => {
  it("follows the server's line: at or below it immediate, above it a job", () => {
    expect(runsAsJob(50, 64)).toBe(false);
    expect(runsAsJob(64, 64)).toBe(false);
    expect(runsAsJob(65, 64)).toBe(true);
    expect(runsAsJob(300, 64)).toBe(true);
    expect(runsAsJob(300, 500)).toBe(false); // the server's number, not one of the page's
    expect(runsAsJob(1, 0)).toBe(true); // --immediate-rows 0: always jobs
  });
  it("waits until the server said, and runs a set of unknown size as a job", () => {
    expect(runsAsJob(10, undefined)).toBeNull();
    expect(runsAsJob(10, null)).toBeNull();
    expect(runsAsJob(undefined, 64)).toBe(true);
    expect(runsAsJob(Number.NaN, 64)).toBe(true);
  });
});

describe("datasetRoute", () => {
  const small = { rows: 50, immediateRows: 64, unavailable: false };
  const large = { rows: 300, immediateRows: 64, unavailable: false };
  it("sends a small set to the immediate route and a large one as a job", () => {
    expect(datasetRoute({ ...small, linked: "none" })).toBe("immediate");
    expect(datasetRoute({ ...large, linked: "none" })).toBe("job");
  });
  it("follows a job the address names, even for a small set, once it is known to be this question's", () => {
    expect(datasetRoute({ ...small, linked: "loading" })).toBe("wait");
    expect(datasetRoute({ ...small, linked: "matches" })).toBe("job");
    expect(datasetRoute({ ...large, linked: "matches" })).toBe("job");
  });
  it("a linked job for another question does not make a small set a job", () => {
    expect(datasetRoute({ ...small, linked: "other" })).toBe("immediate");
    expect(datasetRoute({ ...large, linked: "other" })).toBe("job");
  });
  it("a model without jobs (409) is always asked immediately", () => {
    expect(datasetRoute({ ...large, linked: "none", unavailable: true })).toBe("immediate");
    expect(datasetRoute({ ...large, linked: "loading", unavailable: true })).toBe("immediate");
  });
  it("waits for the server's line before sending anything", () => {
    expect(datasetRoute({ rows: 50, immediateRows: undefined, unavailable: false, linked: "none" })).toBe("wait");
  });
});
