import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/globalSetup.ts"],
    reporters: ["default", "./test/summaryReporter.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Suites share two cores with MariaDB and gearmand: keep file parallelism modest.
    maxWorkers: 2,
    minWorkers: 1
  }
})
