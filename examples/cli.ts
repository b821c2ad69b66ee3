/**
 * The examples' command line: `npm start -- <example> [--host H] [--port N] ...`. With no example it starts
 * `hello` on 127.0.0.1:8080. `npm start -- --help` lists the examples; `npm start -- <example> --help` shows
 * an example's options.
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Effect } from "effect"
import { Command } from "effect/cli"
import * as Chatroom from "./chatroom.ts"
import * as EchoChat from "./echo-chat.ts"
import * as Echo from "./echo.ts"
import * as Hello from "./hello.ts"
import * as HttpClient from "./http-client.ts"
import * as HttpServer from "./http-server.ts"
import * as Http11 from "./http11.ts"
import * as Redis from "./redis.ts"
import * as Shared from "./shared.ts"
import * as Stdio from "./stdio.ts"

const examples = [
  Chatroom.command,
  Echo.command,
  EchoChat.command,
  Hello.command,
  HttpClient.command,
  HttpServer.command,
  Http11.command,
  Redis.command,
  Stdio.command
] as const

const root = Command.make("effect-asynchat", Shared.serverFlags(8080, Hello.serverOptions), Hello.run).pipe(
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
