import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

// `npm run dev` proxies /api to a running `circuit-debugger serve` (CD_API, default port 8000).
export default defineConfig({
  plugins: [react()],
  server: { proxy: { "/api": process.env.CD_API ?? "http://127.0.0.1:8000" } },
  build: { chunkSizeWarningLimit: 2000 },
  test: { environment: "jsdom", include: ["src/**/*.test.{ts,tsx}"] },
});
