import { Effect } from "effect"
import { makeMemory } from "../../src/storage/Storage.js"
import { storageContract } from "./contract.js"

storageContract(
  "memory",
  Effect.gen(function*() {
    const { storage } = yield* makeMemory({ shards: [1, 2] })
    const { storage: degraded } = yield* makeMemory({ shards: [1, 2, 3], down: [3] })
    const { storage: dead } = yield* makeMemory({ shards: [1, 2], down: [1, 2] })
    return { storage, degraded, dead }
  })
)
