/**
 * The examples' command line: `npm start -- <example> [--host H] [--port N] ...`. With no example it starts
 * `hello` on 127.0.0.1:8080. `npm start -- --help` lists the examples; `npm start -- <example> --help` shows
 * an example's options.
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Effect } from "effect"
import { Command } from "effect/cli"
import * as Hello from "./hello.ts"
import * as Shared from "./shared.ts"

const examples = [Hello.command] as const

const root = Command.make("effect-asynchat", { host: Shared.host, port: Shared.port(8080) }, Hello.run).pipe(
  Command.withDescription(
    "Runnable effect-asynchat examples. With no example, starts 'hello' on 127.0.0.1:8080."
  ),
  Command.withSubcommands(examples)
)

root.pipe(
  Command.run({ version: "0.1.0" }),
  Effect.provide(NodeServices.layer),
  NodeRuntime.runMain
)
