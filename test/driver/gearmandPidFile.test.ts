// A gearmand we start (garivini demo, the tests, the bench) leaves no pid file behind: SIGKILL
// gives gearmand no chance to remove its own, so the helper removes it when the process exits.
import { existsSync, readFileSync } from "node:fs"
import { assert, it } from "@effect/vitest"
import { Effect } from "effect"
import { exited, startGearmand } from "../../src/testing/gearmandProcess.js"
import { eventually } from "../gearman/gearmand.js"
import { freePort } from "../support/ports.js"

it.scopedLive("a gearmand's pid file is private to it and removed when it is killed", () =>
  Effect.gen(function*() {
    const child = yield* startGearmand(yield* freePort)
    const path = child.spawnargs.find((a) => a.startsWith("--pid-file="))!.slice("--pid-file=".length)
    yield* eventually(
      Effect.sync(() => existsSync(path) && readFileSync(path, "utf8").trim() === String(child.pid)),
      "gearmand's pid file"
    )
    child.kill("SIGKILL")
    yield* exited(child)
    assert.isFalse(existsSync(path))
  }))
