/**
 * chatroom — the classic asynchat demo, beyond the seeds: a line chat room. Every line a client sends goes to all
 * the others as `<nick> line`; `/nick <name>` renames (announced to the room), `/who` lists the room, `/quit`
 * leaves; joins and leaves (by `/quit` or by hanging up) are announced. The room is the server's channel map:
 * handlers reach it with `yield* ChatServer.ChatServer` and `broadcast` to it.
 *
 * Try it: npm start -- chatroom --port 7002, then, in two or more terminals: nc 127.0.0.1 7002. With
 * `--workers n` it runs as n processes on the port, each a room of its own (the channel map is per process): a
 * chatter meets only those the kernel gave the same worker.
 */
import { Console, Effect, Stream } from "effect"
import { Chat, ChatServer, Protocol, Terminator, Workers } from "effect-asynchat"
import { Command } from "effect/cli"
import * as Shared from "./shared.ts"

/** The longest line a client may send. */
export const MAX_LINE = 1024

const NICK = /^[A-Za-z0-9_-]{1,20}$/

const decoder = new TextDecoder()

/**
 * A new room: its protocol, and the nicks of the connections in it (by connection id, which the server's
 * channel map does not know about). Each server gets its own room.
 */
export const Chatroom = () => {
  const nicks = new Map<number, string>()
  return Protocol.make(Terminator.lf, (lines) =>
    Effect.gen(function*() {
      const chat = yield* Chat.Chat
      const server = yield* ChatServer.ChatServer
      const me = chat.id
      let nick = `guest${me}`
      nicks.set(me, nick)
      const toMe = (line: string) => chat.push(line, "\n")
      const toOthers = (line: string) => server.broadcast(`${line}\n`, { except: me })
      const toAll = (line: string) => server.broadcast(`${line}\n`)

      const rename = (name: string) => {
        if (!NICK.test(name)) return toMe("* a nick is 1 to 20 letters, digits, _ or -")
        if (name === nick) return toMe(`* you are already ${nick}`)
        // newcomers are guest<id>: a nick of that shape could be handed out again
        if (/^guest\d+$/.test(name)) return toMe("* guest<number> nicks are kept for newcomers")
        if ([...nicks.values()].includes(name)) return toMe(`* ${name} is taken`)
        const old = nick
        nick = name
        nicks.set(me, name)
        return toAll(`* ${old} is now ${name}`)
      }

      /** One line; false once the client has left. */
      const onLine = (line: string): Effect.Effect<boolean> => {
        if (!line.startsWith("/")) {
          return line.trim() === ""
            ? Effect.succeed(true)
            : Effect.as(toOthers(`<${nick}> ${line}`), true)
        }
        const [command, ...args] = line.split(" ")
        switch (command) {
          case "/nick":
            return Effect.as(rename(args.join(" ").trim()), true)
          case "/who":
            return Effect.as(toMe(`* here: ${[...nicks.values()].join(", ")}`), true)
          case "/quit":
            return Effect.as(toMe("* bye"), false)
          default:
            return Effect.as(toMe(`* unknown command ${command}; try /nick <name>, /who, /quit`), true)
        }
      }

      yield* toMe(`* welcome, you are ${nick}; /nick <name> renames you, /who lists the room, /quit leaves`)
      yield* toOthers(`* ${nick} joined`)
      yield* Stream.runForEachWhile(lines, (frame) => onLine(decoder.decode(frame.bytes).replace(/\r$/, ""))).pipe(
        Effect.catchReason("ChatError", "FrameTooLong", () => toMe(`* lines are at most ${MAX_LINE} bytes; bye`)),
        Effect.ensuring(
          Effect.suspend(() => {
            nicks.delete(me)
            return toOthers(`* ${nick} left`)
          }).pipe(
            // when the server shuts down (an interruption) nobody is left to tell; and a slow peer must not hold
            // the shutdown up
            Effect.interruptible
          )
        )
      )
    }))
}

/** Lines are short; people are idle for a while between them. */
export const serverOptions: ChatServer.Options = { maxFrameLength: MAX_LINE, idleTimeout: "30 minutes" }

/**
 * Runs a chat room on `host:port`. On Ctrl-C everyone is told and let go at once: chatters idle for hours would
 * otherwise hold a graceful shutdown up for its whole timeout. With `--workers n`, n processes serve the port,
 * each its own room: a chatter sees only those the kernel gave the same worker.
 */
export const run = (options: Shared.ServerFlags & Shared.WorkersFlag) =>
  Shared.withWorkers(
    options,
    "chatroom",
    (port) => Console.log(`  try: nc ${options.host} ${port} (in two or more terminals)`),
    Effect.scoped(Effect.gen(function*() {
      const server = yield* ChatServer.make(Chatroom(), Shared.withLimits(serverOptions, options))
      // runs before the server's own shutdown (finalizers run last first)
      yield* Effect.addFinalizer(() =>
        Effect.flatMap(server.connections, (chats) =>
          Effect.forEach(
            chats,
            (chat) => Effect.andThen(chat.push("* the server is shutting down\n"), chat.closeWhenDone),
            { concurrency: "unbounded", discard: true }
          )).pipe(Effect.interruptible, Effect.timeoutOption("1 second"))
      )
      const port = server.address._tag === "Inet" ? server.address.port : options.port
      const worker = Workers.current()
      yield* Console.log(
        `chatroom listening on ${Chat.formatAddress(server.address)} ${
          worker === undefined ? "(Ctrl-C to stop)" : `(worker ${worker.index}, pid ${process.pid})`
        }`
      )
      if (worker === undefined) yield* Console.log(`  try: nc ${options.host} ${port} (in two or more terminals)`)
      return yield* Effect.never
    })).pipe(Effect.provide(Shared.listenerOf(options)))
  )

/** `npm start -- chatroom [--host H] [--port N] [--workers N]` */
export const command = Command.make(
  "chatroom",
  { ...Shared.serverFlags(7002, serverOptions), workers: Shared.workers },
  run
).pipe(
  Shared.withTelemetry,
  Command.withDescription("A chat room: every line to all the others, /nick, /who, /quit")
)
