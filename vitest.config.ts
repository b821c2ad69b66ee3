import { defineConfig } from "vitest/config"

// CI asks for a JSON report beside the usual output, to print its closing "N passed, N failed" line.
const jsonReport = process.env.VITEST_JSON_REPORT

export default defineConfig({
  // The examples import "effect-asynchat" itself: resolve it to the TypeScript sources, as `npm start` does.
  ssr: { resolve: { conditions: ["@effect-asynchat/source"] } },
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    reporters: jsonReport ? ["default", ["json", { outputFile: jsonReport }]] : ["default"]
  }
})
