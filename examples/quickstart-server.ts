/**
 * The README's server: an upper-casing line server. Each line (up to 1 KiB) comes back upper-cased; "QUIT"
 * answers "BYE" and closes; a line that is too long gets an error and the connection is closed.
 *
 * Try it: npx node --conditions=@effect-asynchat/source examples/quickstart-server.ts 7000, then: nc 127.0.0.1 7000
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect } from "effect"
import { Chat, ChatServer, Listener, Protocol, Terminator } from "effect-asynchat"

const Upper = Protocol.forEach(Terminator.lf, (line) => {
  const text = new TextDecoder().decode(line.bytes).trim()
  return text === "QUIT"
    ? Chat.push("BYE\n").pipe(Effect.andThen(Chat.closeWhenDone))
    : Chat.push(text.toUpperCase(), "\n")
}).pipe(Protocol.mapHandler(Effect.catchReason("ChatError", "FrameTooLong", () => Chat.push("ERR line too long\n"))))

const port = Number(process.argv[2] ?? 7000)
Effect.gen(function*() {
  const server = yield* ChatServer.make(Upper, { maxFrameLength: 1024, idleTimeout: "1 minute" })
  yield* Console.log(`listening on ${Chat.formatAddress(server.address)}`)
  return yield* Effect.never // until Ctrl-C, which closes the scope: a graceful shutdown
}).pipe(Effect.scoped, Effect.provide(Listener.layerTcp({ host: "127.0.0.1", port })), NodeRuntime.runMain)
