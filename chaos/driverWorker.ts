// The chaos soak's worker module for `garivini driver` (chaos/run.ts bundles it with esbuild and
// passes it with --module): a durable job serving the soak's function in 2 to 4 Driver children,
// each writing its own ledger file in CHAOS_LEDGER_DIR. The children open Storage from
// GARIVINI_DB, which the harness gives the Driver.
import { join } from "node:path"
import * as Driver from "../src/driver/define.js"
import { chaosHandler } from "./handler.js"

const ledger = () => join(process.env["CHAOS_LEDGER_DIR"] ?? ".", `driver-${process.pid}.ledger`)

export default Driver.define({
  name: "Chaos",
  prefix: "",
  jobs: {
    // FUNCTION of chaos/load.ts.
    chaos_work: Driver.durable({ min: 2, max: 4 }, chaosHandler(ledger, "driver child"))
  }
})
