/**
 * The README's server: an upper-casing line server. Each line (up to 1 KiB) comes back upper-cased; "QUIT"
 * answers "BYE" and closes; a line that is too long gets an error and the connection is closed.
 *
 * Try it: node examples/quickstart-server.ts 7000, then: nc 127.0.0.1 7000
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer, Stream } from "effect"
import { Chat, ChatServer, Listener, Protocol, Terminator } from "effect-asynchat"

const Upper = Protocol.frames(Terminator.lf, (lines) =>
  Stream.runForEach(lines, (line) => {
    const text = new TextDecoder().decode(line.bytes).trim()
    return text === "QUIT"
      ? Chat.push("BYE\n").pipe(Effect.andThen(Chat.closeWhenDone))
      : Chat.push(text.toUpperCase(), "\n")
  }).pipe(
    Effect.catchReason("ChatError", "FrameTooLong", () => Chat.push("ERR line too long\n"))
  ))

const port = Number(process.argv[2] ?? 7000)
ChatServer.layer(Upper, { maxFrameLength: 1024, idleTimeout: "1 minute" }).pipe(
  Layer.provide(Listener.layerTcp({ host: "127.0.0.1", port })),
  Layer.launch,
  NodeRuntime.runMain
)
