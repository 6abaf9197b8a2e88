// Each command's help lists the flags that command reads, and no other (issue 23: the role
// commands listed every role's flags), in groups: connection first, output last.
import { CliConfig, Command, HelpDoc, Usage } from "@effect/cli"
import { assert, describe, it } from "@effect/vitest"
import { consumeCommand } from "../src/cli/consume.js"
import { demoCommand } from "../src/cli/demo.js"
import {
  functionsListCommand,
  limitCommand,
  pauseCommand,
  resumeCommand,
  schedulesAddCommand,
  schedulesListCommand,
  schedulesRemoveCommand
} from "../src/cli/flow.js"
import { gearmandCommand } from "../src/cli/gearmand.js"
import { injectCommand } from "../src/cli/inject.js"
import {
  cancelCommand,
  deadCommand,
  deleteCommand,
  listCommand,
  purgeCommand,
  retryCommand,
  showCommand
} from "../src/cli/jobs.js"
import { migrateCommand } from "../src/cli/migrate.js"
import { controllerCommand, injectorCommand, queueRunnerCommand, runCommand } from "../src/cli/roles.js"
import { statusCommand } from "../src/cli/status.js"
import { upCommand } from "../src/cli/up.js"
import { webCommand } from "../src/cli/web.js"

const connection = ["--config", "--db", "--statement-timeout", "--gearmand"]
const storage = ["--config", "--db", "--statement-timeout"]
const output = ["--log-format", "--log-level"]
// Long-running commands serve Prometheus metrics on request.
const metrics = ["--metrics-listen"]
// @effect/cli's own, on every command (--log-level: the level, see src/cli/logging.ts).
const builtIn = ["--completions", "--log-level", "--wizard", "--version"]
const runner = [
  "--batch-max-size",
  "--batch-max-bytes",
  "--batch-run-sleep",
  "--queue-watermark-depth",
  "--lease",
  "--defer-for",
  "--shard-retry-max"
]
const web = ["--web-token", "--read-only"]
const injector = ["--injector-concurrency", "--injector-max-request-jobs", "--injector-max-request-bytes"]
const controller = ["--controller-concurrency", "--controller-timeout", "--controller-max-attempts"]
const embedded = [
  "--listen",
  "--max-queue",
  "--max-queue-bytes",
  "--max-total-bytes",
  "--max-packet",
  "--max-backlog",
  "--max-input-bytes",
  "--max-connections"
]

// What each command reads (its handler and the Settings fields it uses), in help order.
/** A command's help: its OPTIONS section as [flag, description] pairs, in order, and its usage line. */
const helpOf = <Name extends string, R, E, A>(command: Command.Command<Name, R, E, A>) => {
  const plain = (text: string) => text.replace(/\x1b\[[0-9;]*m/g, "")
  const text = plain(HelpDoc.toAnsiText(Command.getHelp(command, CliConfig.defaultConfig)))
  const options = text.slice(text.indexOf("OPTIONS")).split(/\n(?=--)/).slice(1).map((block) => {
    const [heading = "", ...rest] = block.split("\n")
    return [heading.split(" ")[0]!, rest.join(" ")] as const
  })
  return { options, usage: plain(HelpDoc.toAnsiText(Usage.getHelp(Command.getUsage(command)))) }
}

const expected: ReadonlyArray<readonly [string, ReturnType<typeof helpOf>, ReadonlyArray<string>]> = [
  ["queue-runner", helpOf(queueRunnerCommand), [...connection, ...runner, ...metrics, ...output]],
  // The Injector leases and defers as the runner does; the Controller's timeout is checked against the lease.
  ["injector", helpOf(injectorCommand), [
    ...connection,
    "--lease",
    "--queue-watermark-depth",
    ...injector,
    ...metrics,
    ...output
  ]],
  ["controller", helpOf(controllerCommand), [...connection, "--lease", ...controller, ...metrics, ...output]],
  ["run", helpOf(runCommand), [...connection, ...runner, ...controller, ...injector, "--roles", ...metrics, ...output]],
  ["up", helpOf(upCommand), [
    ...connection,
    ...runner,
    ...controller,
    ...injector,
    ...embedded,
    ...metrics,
    "--web-listen",
    ...web,
    "--driver-console",
    ...output
  ]],
  ["gearmand", helpOf(gearmandCommand), ["--config", ...embedded, ...metrics, ...output]],
  // The console's actions refuse jobs within a lease of now: it reads the runners' lease.
  ["web", helpOf(webCommand), [...connection, "--lease", "--listen", ...web, "--driver-console", ...output]],
  ["inject", helpOf(injectCommand), [
    ...connection,
    "--count",
    "--function",
    "--arg",
    "--priority",
    "--pure",
    ...output
  ]],
  ["consume", helpOf(consumeCommand), [...connection, "--function", "--concurrency", ...metrics, ...output]],
  ["status", helpOf(statusCommand), [...connection, "--json", ...output]],
  ["demo", helpOf(demoCommand), [...connection, "--count", ...output]],
  ["migrate", helpOf(migrateCommand), [...storage, "--status", ...output]],
  ["jobs list", helpOf(listCommand), [
    ...storage,
    "--function",
    "--state",
    "--shard",
    "--limit",
    "--after",
    "--json",
    ...output
  ]],
  ["jobs show", helpOf(showCommand), [...storage, "--json", ...output]],
  ["jobs dead", helpOf(deadCommand), [...storage, "--function", "--shard", "--limit", "--after", "--json", ...output]],
  ["jobs retry", helpOf(retryCommand), [...storage, "--function", "--dead", "--force", "--lease", ...output]],
  ["jobs cancel", helpOf(cancelCommand), [...storage, "--force", "--lease", ...output]],
  ["jobs delete", helpOf(deleteCommand), [...storage, "--force", "--lease", ...output]],
  ["jobs purge", helpOf(purgeCommand), [
    ...storage,
    "--dead",
    "--cancelled",
    "--older-than",
    "--function",
    "--shard",
    ...output
  ]],
  ["functions list", helpOf(functionsListCommand), [...storage, "--json", ...output]],
  ["functions pause", helpOf(pauseCommand), [...storage, ...output]],
  ["functions resume", helpOf(resumeCommand), [...storage, ...output]],
  ["functions limit", helpOf(limitCommand), [...storage, "--rate", "--burst", "--concurrency", "--off", ...output]],
  ["schedules list", helpOf(schedulesListCommand), [...storage, "--json", ...output]],
  ["schedules add", helpOf(schedulesAddCommand), [
    ...storage,
    "--cron",
    "--function",
    "--arg",
    "--tz",
    "--missed",
    ...output
  ]],
  ["schedules remove", helpOf(schedulesRemoveCommand), [...storage, ...output]]
]

describe("command help", () => {
  for (const [name, { options }, flags] of expected) {
    it(`${name} lists only its own flags, grouped, defaults shown`, () => {
      assert.deepStrictEqual(options.map(([flag]) => flag), [...flags, ...builtIn])
      for (const [flag, description] of options) {
        // --db and --gearmand have defaults: never shown as required.
        assert.notInclude(description, "may be repeated zero or more times.\n  This setting is required", flag)
        if (runner.includes(flag) || injector.includes(flag) || controller.includes(flag)) {
          assert.include(description, "[role tuning]", flag)
          assert.include(description, "default", flag)
        }
        if (flag === "--db" || flag === "--gearmand") {
          assert.include(description, "[connection]", flag)
          assert.include(description, "default", flag)
          assert.include(description, "This setting is optional", flag)
        }
        if (flag === "--log-format" || flag === "--metrics-listen") assert.include(description, "[output]", flag)
        if (flag === "--metrics-listen") assert.include(description, "GARIVINI_METRICS_LISTEN", flag)
        // A flag with a default says it (@effect/cli's help does not).
        if (
          ["--count", "--concurrency", "--limit", "--roles", "--listen", "--web-listen", "--burst", "--missed", "--tz"]
            .includes(flag)
        ) {
          assert.include(description, "default", flag)
        }
      }
    })
  }

  it("usage lines show --db and --gearmand as optional, in brackets", () => {
    for (const [name, { usage }] of expected) {
      assert.notMatch(usage, /(^|[^[])--(db|gearmand) text/, name)
    }
  })
})
