/**
 * chatroom — the classic asynchat demo, beyond the seeds: a line chat room. Every line a client sends goes to all
 * the others as `<nick> line`; `/nick <name>` renames (announced to the room), `/who` lists the room, `/quit`
 * leaves; joins and leaves (by `/quit` or by hanging up) are announced. The room is the server's channel map:
 * handlers reach it with `yield* ChatServer.ChatServer` and `broadcast` to it.
 *
 * Try it: npm start -- chatroom --port 7002, then, in two or more terminals: nc 127.0.0.1 7002. With
 * `--workers n` it runs as n processes on the port, each a room of its own (the channel map is per process): a
 * chatter meets only those the kernel gave the same worker. With `--redis redis://HOST:PORT` every process (its
 * workers, other machines) joins one room over Redis (`ChannelMap`): lines, joins, renames and leaves reach every
 * process, and `/who` lists everyone; a newcomer is then guest<id>-<tag>, the tag this process's (its pid in base
 * 36), since connection ids are per process.
 */
import { Console, Effect, Option, type Scope, Stream } from "effect"
import { ChannelMap, Chat, ChatServer, Protocol, Terminator, Workers } from "effect-asynchat"
import { Command, Flag } from "effect/cli"
import * as Os from "node:os"
import * as Shared from "./shared.ts"

/** The longest line a client may send. */
export const MAX_LINE = 1024

const NICK = /^[A-Za-z0-9_-]{1,20}$/

const decoder = new TextDecoder()

/**
 * A new room: its protocol, and the nicks of the connections in it (by connection id, which the server's
 * channel map does not know about). Each server gets its own room; with `map`, the room is the map's, across
 * processes: lines go to every node, nicks are the map's presence, `/who` lists every node's, and newcomers are
 * `guest<id>-<guestTag>` (connection ids are per process; the tag tells processes apart).
 */
export const Chatroom = (map?: ChannelMap.ChannelMapShape, guestTag = process.pid.toString(36)) => {
  const nicks = new Map<number, string>()
  return Protocol.make(Terminator.lf, (lines) =>
    Effect.scoped(Effect.gen(function*() {
      const chat = yield* Chat.Chat
      const server = yield* ChatServer.ChatServer
      const me = chat.id
      let nick = map === undefined ? `guest${me}` : `guest${me}-${guestTag}`
      nicks.set(me, nick)
      if (map !== undefined) yield* map.join(me, nick)
      const room = map ?? server
      const toMe = (line: string) => chat.push(line, "\n")
      const toOthers = (line: string) => room.broadcast(`${line}\n`, { except: me })
      const toAll = (line: string) => room.broadcast(`${line}\n`)
      // every process's nicks when the map can say, this process's otherwise
      const everyone: Effect.Effect<{ readonly nicks: ReadonlyArray<string>; readonly all: boolean }> =
        map === undefined
          ? Effect.sync(() => ({ nicks: [...nicks.values()], all: true }))
          : map.members.pipe(
            Effect.map((members) => ({ nicks: members.map((member) => member.meta), all: true })),
            Effect.orElseSucceed(() => ({ nicks: [...nicks.values()], all: false }))
          )

      const rename = (name: string) =>
        Effect.gen(function*() {
          if (!NICK.test(name)) return yield* toMe("* a nick is 1 to 20 letters, digits, _ or -")
          if (name === nick) return yield* toMe(`* you are already ${nick}`)
          // newcomers are guest<id> (or guest<id>-<tag>): a nick of that shape could be handed out again
          if (/^guest\d+(-[a-z0-9]+)?$/.test(name)) return yield* toMe("* guest<number> nicks are kept for newcomers")
          if ((yield* everyone).nicks.includes(name)) return yield* toMe(`* ${name} is taken`)
          const old = nick
          nick = name
          nicks.set(me, name)
          // joined again with the same id: the map's entry is updated
          if (map !== undefined) yield* map.join(me, name)
          return yield* toAll(`* ${old} is now ${name}`)
        })

      /** One line; false once the client has left. */
      const onLine = (line: string): Effect.Effect<boolean, never, Scope.Scope> => {
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
            return Effect.as(
              Effect.flatMap(everyone, (here) =>
                toMe(`* here: ${here.nicks.join(", ")}${here.all ? "" : " (the other processes are unreachable)"}`)),
              true
            )
          case "/quit":
            return Effect.as(toMe("* bye"), false)
          default:
            return Effect.as(toMe(`* unknown command ${command}; try /nick <name>, /who, /quit`), true)
        }
      }

      yield* toMe(`* welcome, you are ${nick}; /nick <name> renames you, /who lists the room, /quit leaves`)
      yield* toOthers(`* ${nick} joined`)
      yield* Stream.runForEachWhile(lines, (frame) =>
        onLine(decoder.decode(frame.bytes).replace(/\r$/, ""))).pipe(
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
    })))
}

/** Lines are short; people are idle for a while between them. */
export const serverOptions: ChatServer.Options = { maxFrameLength: MAX_LINE, idleTimeout: "30 minutes" }

/**
 * Runs a chat room on `host:port`. On Ctrl-C everyone is told and let go at once: chatters idle for hours would
 * otherwise hold a graceful shutdown up for its whole timeout. With `--workers n`, n processes serve the port,
 * each its own room: a chatter sees only those the kernel gave the same worker.
 */
export const run = (options: Shared.ServerFlags & Shared.WorkersFlag & RedisFlag) =>
  Shared.withWorkers(
    options,
    "chatroom",
    (port) => Console.log(`  try: nc ${options.host} ${port} (in two or more terminals)`),
    Effect.scoped(Effect.gen(function*() {
      const map = Option.isSome(options.redis)
        ? yield* ChannelMap.make({ url: options.redis.value, nodeId: `${Os.hostname()}:${process.pid}` })
        : undefined
      const server = yield* ChatServer.make(Chatroom(map), Shared.withLimits(serverOptions, options))
      if (map !== undefined) {
        yield* map.attach(server)
        yield* Console.log(`  one room over Redis at ${Option.getOrThrow(options.redis)}, as node ${map.nodeId}`)
      }
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

/** `--redis url`: one room across processes (and machines) over this Redis. */
export const redis = Flag.String("redis").pipe(
  Flag.withMetavar("url"),
  Flag.withDescription(
    "Join every process with the same --redis in one room over Redis pub/sub, e.g. redis://127.0.0.1:6379; " +
      "while Redis is away each process goes on as a room of its own (default: none)"
  ),
  Flag.optional
)

/** The value of the `redis` flag. */
export interface RedisFlag {
  readonly redis: Option.Option<string>
}

/** `npm start -- chatroom [--host H] [--port N] [--workers N] [--redis URL]` */
export const command = Command.make(
  "chatroom",
  { ...Shared.serverFlags(7002, serverOptions), workers: Shared.workers, redis },
  run
).pipe(
  Shared.withTelemetry,
  Command.withDescription("A chat room: every line to all the others, /nick, /who, /quit")
)
