/**
 * `garivini consume`: an example worker (the original `gv_consume`). It prints each job and
 * completes it; controller jobs are left to the Controller, as the worker helper does.
 */
import { Command, Options } from "@effect/cli"
import { Console, Layer } from "effect"
import { formatHandle } from "../Job.js"
import * as Worker from "../roles/Worker.js"
import { connectionOptions, metricsOptions, outputOptions } from "./config.js"
import { exposition } from "./metrics.js"
import { servicesLayer, withSettings } from "./shared.js"

const options = {
  ...connectionOptions,
  function: Options.text("function").pipe(
    Options.withDefault("foo"),
    Options.withDescription("The Gearman function to serve (default foo)")
  ),
  concurrency: Options.integer("concurrency").pipe(
    Options.withDefault(4),
    Options.withDescription("Jobs at once (default 4)")
  ),
  ...metricsOptions,
  ...outputOptions
}

export const consumeCommand = Command.make("consume", options, (o) =>
  withSettings(o, (settings) =>
    Layer.launch(
      Layer.scopedDiscard(
        Worker.serve({ [o.function]: (job) => Console.log(`Hay it's a job: ${formatHandle(job)} ${job.text}`) }, {
          concurrency: o.concurrency
        })
      ).pipe(Layer.provide(servicesLayer(settings)), Layer.merge(exposition(settings.metricsListen)))
    ))).pipe(Command.withDescription("An example worker: prints each job of a function and completes it"))
