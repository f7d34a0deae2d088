// Browser end-to-end tests: Debian's Chromium (no browser downloads) against a real server on
// the default model, started here on its own port with a throwaway share database.
import { defineConfig } from "@playwright/test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const port = Number(process.env.E2E_PORT ?? 8766);
const root = resolve(import.meta.dirname, "..");
const shareDb = join(mkdtempSync(join(tmpdir(), "cd-e2e-")), "investigations.sqlite");

export default defineConfig({
  testDir: "e2e",
  outputDir: "e2e-artifacts/results",
  timeout: 60_000,
  workers: 1,
  reporter: [["list"], ["json", { outputFile: "e2e-artifacts/report.json" }]],
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    screenshot: "on",
    viewport: { width: 1440, height: 900 },
    launchOptions: {
      executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"],
    },
  },
  webServer: [{
    command: `${join(root, ".venv", "bin", "circuit-debugger")} serve --model default --model tracr/lib_sort --port ${port} --share-db ${shareDb}`,
    url: `http://127.0.0.1:${port}/api/health`,
    timeout: 120_000,
    reuseExistingServer: false,
    stdout: "ignore",
    stderr: "pipe",
  }, {  // the default model plus a residual-stream SAE (e2e/resid.spec.ts)
    command: `${join(root, ".venv", "bin", "python")} ${join(root, "frontend", "e2e", "resid_sae_server.py")} ${port + 2} ${shareDb}.resid`,
    url: `http://127.0.0.1:${port + 2}/api/health`,
    timeout: 120_000,
    reuseExistingServer: false,
    stdout: "ignore",
    stderr: "pipe",
  }],
});
