import { defineConfig } from "vitest/config"

// Tests that need MariaDB, a gearmand or the built dist/ (the CLI, the Driver's children, the
// end-to-end suites). Everything else is a unit test and must pass with no server and no build:
// .ci/unit-alone checks that, so a file missing from this list fails CI rather than going unnoticed.
const integration = [
  "test/cli{,Hostile,Migrate,Paths,Signals,Sqlite,TwoRunners,Flow}.test.ts", // cliConfig.test.ts is a unit test
  "test/config/ipv6.test.ts", // a gearmand on ::1
  "test/up.test.ts",
  "test/metrics/{cli,prometheus}.test.ts", // garivini up and consume from dist/, a real Prometheus
  "test/**/*.e2e.test.ts",
  "test/driver/**/*.test.ts", // fixtures import dist/; children are forked from dist/
  "test/fuzz/config.test.ts", // runs the CLI
  "test/fuzz/injectJobs.test.ts",
  "test/gearman/conformance.test.ts",
  "test/gearman/faults.test.ts",
  "test/gearman/inflight.test.ts",
  "test/gearman/interop.test.ts",
  "test/roles/dispatch.test.ts",
  "test/storage/migrations*.test.ts",
  "test/storage/mysql*.test.ts",
  "test/cliBackends.test.ts", // one CLI scenario over MariaDB and SQLite
  "test/cliOutput.test.ts",
  "test/quickstart.test.ts", // packs the package and installs it from the registry
  "test/pack.test.ts", // npm pack --dry-run
  "test/web/browser.test.ts" // Chromium over MariaDB and gearmand
]

export default defineConfig({
  test: {
    reporters: ["default", "./test/summaryReporter.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Suites share two cores with MariaDB and gearmand: keep file parallelism modest.
    maxWorkers: 2,
    minWorkers: 1,
    projects: [
      {
        extends: true,
        test: {
          name: "unit",
          include: ["test/**/*.test.ts"],
          exclude: integration
        }
      },
      {
        extends: true,
        test: {
          name: "integration",
          include: integration,
          // Fails the run, saying how to start it, when a server is missing; builds dist/ if stale.
          globalSetup: ["test/globalSetup.ts"]
        }
      }
    ]
  }
})
