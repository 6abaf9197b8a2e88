import { Effect, Layer } from "effect"
import type { Gearman } from "../../src/gearman/Gearman.js"
import { layer, layerMemory } from "../../src/gearman/Gearman.js"
import { conformance } from "./conformance.js"
import { embeddedJobServer } from "./embedded.js"
import { gearmand } from "./gearmand.js"

conformance("in-memory job server", layerMemory())

conformance(
  "gearmand 1.1",
  Layer.unwrapScoped(Effect.map(gearmand, (server) => layer({ servers: [server.server] }))) satisfies Layer.Layer<
    Gearman
  >
)

conformance(
  "in-process job server served over TCP",
  Layer.unwrapScoped(
    Effect.map(embeddedJobServer(), (server) => layer({ servers: [server.server] }))
  ) satisfies Layer.Layer<Gearman>
)
