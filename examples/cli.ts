/**
 * The examples' command line: `npm start -- <example> [--host H] [--port N] ...`. With no example it starts
 * `hello` on 127.0.0.1:8080. `npm start -- --help` lists the examples; `npm start -- <example> --help` shows
 * an example's options.
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Cause, Effect, Exit, Runtime } from "effect"
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
import * as Smtp from "./smtp.ts"
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
  Smtp.command,
  Stdio.command
] as const

const root = Command.make("effect-asynchat", Shared.serverFlags(8080, Hello.serverOptions), Hello.run).pipe(
  Shared.withTelemetry,
  Command.withDescription(
    "Runnable effect-asynchat examples. With no example, starts 'hello' on 127.0.0.1:8080."
  ),
  Command.withSubcommands(examples)
)

/**
 * A server stopped by SIGTERM or Ctrl-C has shut down as asked: exit 0, as redis-server and nginx do, rather
 * than Effect's 130 for an interruption, which a supervisor (systemd, Kubernetes) would count as a failure.
 */
const teardown: Runtime.Teardown = (exit, onExit) =>
  Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? onExit(0) : Runtime.defaultTeardown(exit, onExit)

root.pipe(
  Command.run({ version: "0.1.0" }),
  Effect.provide(NodeServices.layer),
  NodeRuntime.runMain({ teardown })
)
