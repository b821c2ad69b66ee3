/**
 * ChatClient end to end: over real transports (Unix sockets, TCP, a child process's pipes), connect errors with
 * retries, and over the in-memory transport (timeouts on the test clock, a client as a Layer, `run`).
 */
import { assert, describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Option, Schedule, Scope, Stream } from "effect"
import * as Socket from "effect/socket/Socket"
import { TestClock } from "effect/testing"
import { Chat, ChatClient, ChatError, ChatServer, Listener, Protocol, Terminator } from "../src/index.ts"
import * as MemoryTransport from "../src/MemoryTransport.ts"
import { text } from "./helpers.ts"
import { connectLines, memory, readLines, settle } from "./memory-helpers.ts"
import {
  Echo,
  exitOf,
  freePort,
  line,
  portOf,
  socketPath,
  spawnChild,
  tcpServer,
  watchedDuplexOf,
  WhoAmI
} from "./transport-helpers.ts"

/** A TCP connector to `port` that counts its attempts to open. */
const countingTcp = (port: number) => {
  let attempts = 0
  const tcp = ChatClient.tcp({ port })
  const connector: ChatClient.Connector = { ...tcp, open: Effect.suspend(() => (attempts++, tcp.open)) }
  return { connector, attempts: () => attempts }
}

describe("ChatClient over Unix sockets and TCP", () => {
  it.live("ChatClient.unix does a request/response with a server on Listener.layerUnix", () =>
    Effect.gen(function*() {
      const path = yield* socketPath
      yield* Effect.gen(function*() {
        const server = yield* ChatServer.make(WhoAmI)
        expect(server.address).toEqual({ _tag: "Unix", path })
        const client = yield* ChatClient.connect(ChatClient.unix(path), { terminator: Terminator.lf })
        expect(client.chat.remoteAddress).toEqual({ _tag: "Unix", path })
        yield* client.chat.push("hello\n", "again\n")
        const answers = yield* client.input.pipe(Stream.take(2), Stream.map(line), Stream.runCollect)
        expect(answers).toEqual([`hello from unix:${path} to unix:${path}`, `again from unix:${path} to unix:${path}`])
        expect(yield* server.count).toBe(1)
      }).pipe(Effect.scoped, Effect.provide(Listener.layerUnix({ path })))
    }))

  it.live("a fiber reading a TCP client's input is told when the connection closes", () =>
    Effect.gen(function*() {
      const server = yield* tcpServer(Echo)
      const client = yield* ChatClient.connect(ChatClient.tcp({ port: portOf(server) }), { terminator: Terminator.lf })
      const reading = yield* Effect.forkChild(Effect.flip(Stream.runDrain(client.input)))
      yield* Effect.sleep("50 millis")
      yield* client.chat.close
      const error = yield* Fiber.join(reading).pipe(Effect.timeout("2 seconds"))
      expect(error.reason._tag).toBe("ReadFailed")
    }))

  it.live("ChatClient.tcp does a request/response and both ends agree on the addresses", () =>
    Effect.gen(function*() {
      const server = yield* tcpServer(WhoAmI)
      const port = portOf(server)
      const client = yield* ChatClient.connect(ChatClient.tcp({ port }), { terminator: Terminator.lf })
      expect(client.chat.remoteAddress).toEqual({ _tag: "Inet", host: "127.0.0.1", port })
      const local = client.chat.localAddress
      expect(local._tag === "Inet" && local.host === "127.0.0.1" && local.port > 0).toBe(true)
      yield* client.chat.push("ping\n")
      const answer = yield* Stream.runHead(client.input)
      expect(answer._tag === "Some" && line(answer.value)).toBe(
        `ping from ${Chat.formatAddress(local)} to 127.0.0.1:${port}`
      )
    }))

  it.live("ChatClient.run runs a protocol against a TCP server until the server closes", () =>
    Effect.gen(function*() {
      // The server answers one line and hangs up: the client's protocol sees its end of input.
      const server = yield* tcpServer(Protocol.make(Terminator.lf, (lines) =>
        Stream.runHead(lines).pipe(
          Effect.flatMap((first) => Chat.push(`hi ${first._tag === "Some" ? line(first.value) : "?"}\n`))
        )))
      const received: Array<string> = []
      yield* ChatClient.run(
        ChatClient.tcp({ port: portOf(server) }),
        Protocol.make(Terminator.lf, (lines) =>
          Chat.push("there\n").pipe(
            Effect.andThen(Stream.runForEach(lines, (frame) => Effect.sync(() => received.push(line(frame)))))
          ))
      ).pipe(Effect.timeout("5 seconds"))
      expect(received).toEqual(["hi there"])
    }))
})

describe("ChatClient.duplex over a child process's pipes", () => {
  it.live("runs a line protocol through cat and lets cat end when the scope closes", () =>
    Effect.gen(function*() {
      const child = yield* spawnChild("cat")
      yield* Effect.gen(function*() {
        const client = yield* ChatClient.connect(
          ChatClient.duplex("cat", watchedDuplexOf(child.stdout!, child.stdin!, [])),
          { terminator: Terminator.lf }
        )
        expect(client.chat.remoteAddress).toEqual({ _tag: "Pipe", name: "cat" })
        yield* client.chat.push("alpha\n", "beta\ngam")
        yield* client.chat.push("ma\n")
        const echoed = yield* client.input.pipe(Stream.take(3), Stream.map(line), Stream.runCollect)
        expect(echoed).toEqual(["alpha", "beta", "gamma"])
      }).pipe(Effect.scoped)
      // Closing the connection closes cat's stdin: cat sees EOF and exits on its own, with status 0.
      expect(yield* exitOf(child)).toEqual({ code: 0, signal: null })
    }))

  it.live("drives a Node child process that speaks a line protocol on its stdio", () =>
    Effect.gen(function*() {
      const script = [
        `const rl = require("node:readline").createInterface({ input: process.stdin })`,
        `rl.on("line", (l) => {`,
        `  const m = /^add (-?\\d+) (-?\\d+)$/.exec(l)`,
        `  if (l === "quit") process.stdout.write("bye\\n", () => process.exit(0))`,
        `  else if (m) process.stdout.write("= " + (Number(m[1]) + Number(m[2])) + "\\n")`,
        `  else process.stdout.write("error " + JSON.stringify(l) + "\\n")`,
        `})`
      ].join("\n")
      const child = yield* spawnChild(process.execPath, ["-e", script])
      const received: Array<string> = []
      // The child exits after "quit": its stdout ends, and with it our protocol's input.
      yield* ChatClient.run(
        ChatClient.duplex("calc", watchedDuplexOf(child.stdout!, child.stdin!, [])),
        Protocol.make(Terminator.lf, (lines) =>
          Chat.push("add 2 3\n", "add 10 -4\n", "mul 1 1\n", "quit\n").pipe(
            Effect.andThen(Stream.runForEach(lines, (frame) => Effect.sync(() => received.push(line(frame)))))
          ))
      ).pipe(Effect.timeout("10 seconds"))
      expect(received).toEqual(["= 5", "= 6", `error "mul 1 1"`, "bye"])
      expect(yield* exitOf(child)).toEqual({ code: 0, signal: null })
    }))

  // Regression: a `Duplex.from` pair destroyed before both sides finished emits an AbortError; with nobody
  // listening it was an uncaught exception that killed the program whenever such a connection closed.
  it.live("closing a ChatClient.duplex connection emits no unhandled 'error'", () =>
    Effect.gen(function*() {
      const child = yield* spawnChild("cat")
      const unhandled: Array<Error> = []
      yield* Effect.gen(function*() {
        const client = yield* ChatClient.connect(
          ChatClient.duplex("cat", watchedDuplexOf(child.stdout!, child.stdin!, unhandled)),
          { terminator: Terminator.lf }
        )
        yield* client.chat.push("ping\n")
        const echoed = yield* Stream.runHead(client.input)
        expect(echoed._tag === "Some" && line(echoed.value)).toBe("ping")
      }).pipe(Effect.scoped)
      yield* exitOf(child)
      // The error is emitted on a later tick.
      yield* Effect.sleep("20 millis")
      expect(unhandled.map((error) => error.name)).toEqual([])
    }))
})

describe("ChatClient connect errors", () => {
  it.live("connecting to a port nobody listens on fails with ConnectFailed naming the target", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const error = yield* Effect.flip(ChatClient.connect(ChatClient.tcp({ port }), { terminator: Terminator.lf }))
      expect(error._tag).toBe("ChatError")
      expect(error.reason._tag).toBe("ConnectFailed")
      expect(error.message).toContain(`127.0.0.1:${port}`)
      expect(error.message).toContain("ECONNREFUSED")
    }))

  it.live("a retry schedule gives up after its last attempt with ConnectFailed", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const counted = countingTcp(port)
      const error = yield* Effect.flip(ChatClient.connect(counted.connector, {
        terminator: Terminator.lf,
        retry: Schedule.spaced("10 millis").pipe(Schedule.upTo({ times: 3 }))
      }))
      expect(error.reason._tag).toBe("ConnectFailed")
      expect(counted.attempts()).toBe(4)
    }))

  it.live("with a retry schedule the client connects once a server starts listening on the port", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const counted = countingTcp(port)
      // The server lives in the test's scope, the client in an inner one: the client's scope is created when it
      // starts connecting, before the server exists, and must still close first.
      const outer = yield* Effect.scope
      yield* Effect.gen(function*() {
        const connecting = yield* Effect.forkChild(ChatClient.connect(counted.connector, {
          terminator: Terminator.lf,
          retry: Schedule.spaced("50 millis").pipe(Schedule.upTo({ times: 20 }))
        }))
        yield* Effect.sleep("250 millis")
        const refused = counted.attempts()
        const server = yield* tcpServer(Echo, {}, port).pipe(Scope.provide(outer))
        const client = yield* Fiber.join(connecting)
        expect(refused).toBeGreaterThanOrEqual(2)
        expect(counted.attempts()).toBeLessThanOrEqual(21)
        yield* client.chat.push("late\n")
        const echoed = yield* Stream.runHead(client.input)
        expect(echoed._tag === "Some" && line(echoed.value)).toBe("late")
        expect(yield* server.count).toBe(1)
      }).pipe(Effect.scoped)
    }))
})

describe("ChatClient over the in-memory transport", () => {
  it.effect("a fiber reading a client's input is told when the connection closes, instead of waiting forever", () =>
    Effect.gen(function*() {
      yield* ChatServer.make(Echo)
      const client = yield* connectLines
      const reading = yield* Effect.forkChild(Effect.flip(Stream.runDrain(client.input)))
      yield* settle
      yield* client.chat.close
      const error = yield* Fiber.join(reading)
      assert(error.reason._tag === "ReadFailed")
    }).pipe(Effect.provide(memory())))

  it.effect("fails with ConnectFailed when opening takes longer than connectTimeout", () =>
    Effect.gen(function*() {
      const nowhere: ChatClient.Connector = { target: "memory:nowhere", open: Effect.never }
      const attempt = yield* Effect.forkChild(
        Effect.flip(
          Effect.scoped(ChatClient.connect(nowhere, { terminator: Terminator.lf, connectTimeout: "2 seconds" }))
        )
      )
      yield* TestClock.adjust("2 seconds")
      const error = yield* Fiber.join(attempt)
      expect(error.reason._tag).toBe("ConnectFailed")
      expect(error.message).toBe("Connect to memory:nowhere failed: timed out after 2s")
    }))

  it.effect("retries a failed open with the given Schedule", () =>
    Effect.gen(function*() {
      yield* ChatServer.make(Echo)
      const memoryConnector = yield* MemoryTransport.connector
      let attempts = 0
      const flaky: ChatClient.Connector = {
        target: "memory:flaky",
        open: Effect.suspend(() =>
          ++attempts < 3
            ? Effect.fail(
              new ChatError.ChatError({
                reason: new ChatError.ConnectFailed({ target: "memory:server", cause: "refused" })
              })
            )
            : memoryConnector.open
        )
      }
      const client = yield* ChatClient.connect(flaky, { terminator: Terminator.lf, retry: Schedule.recurs(5) })
      yield* client.chat.push("third time lucky\n")
      expect(yield* readLines(client, 1)).toEqual(["third time lucky"])
      expect(attempts).toBe(3)
    }).pipe(Effect.provide(memory())))

  it.effect("layer: a connection as a Layer, closed with it", () =>
    Effect.gen(function*() {
      const server = yield* ChatServer.make(Echo)
      const connector = yield* MemoryTransport.connector
      const ClientLive = ChatClient.layer(connector, { terminator: Terminator.lf })
      const echoed = yield* Effect.gen(function*() {
        const client = yield* ChatClient.Connection
        yield* client.chat.push("via a layer\n")
        return yield* readLines(client, 1)
      }).pipe(Effect.provide(ClientLive))
      expect(echoed).toEqual(["via a layer"])
      yield* settle
      expect(yield* server.count).toBe(0)
    }).pipe(Effect.provide(memory())))

  it.effect("run: a handler still running when the connection ends is interrupted before run returns", () =>
    Effect.gen(function*() {
      yield* ChatServer.make(Echo)
      const connector = yield* MemoryTransport.connector
      let interrupted = false
      // the output's end decides the connection's outcome while the handler goes on
      const Lingers = Protocol.make(
        Terminator.lf,
        () =>
          Effect.andThen(Chat.closeWhenDone, Effect.never).pipe(Effect.onInterrupt(() =>
            Effect.sync(() => {
              interrupted = true
            })
          ))
      )
      yield* ChatClient.run(connector, Lingers)
      expect(interrupted).toBe(true)
    }).pipe(Effect.provide(memory())))

  it.effect("run: a client runs a Protocol like a server and returns its outcome", () =>
    Effect.gen(function*() {
      yield* ChatServer.make(Echo)
      const connector = yield* MemoryTransport.connector
      const Ask = Protocol.make(Terminator.lf, (lines) =>
        Effect.gen(function*() {
          yield* Chat.push("question\n")
          const answer = yield* Stream.runHead(lines)
          if (Option.isNone(answer) || text(answer.value.bytes) !== "question") {
            return yield* Effect.fail("wrong answer")
          }
        }))
      yield* ChatClient.run(connector, Ask)
      const Picky = Protocol.make(Terminator.lf, () => Effect.fail("picky" as const))
      expect(yield* Effect.flip(ChatClient.run(connector, Picky))).toBe("picky")
    }).pipe(Effect.provide(memory())))
})

describe("ChatClient over an effect Socket", () => {
  // A WebSocket's writer has no release: ending our output sends nothing, and a well-behaved peer never ends.
  it.live("a socket with no half-close is released as its connection ends, not a linger later", () =>
    Effect.gen(function*() {
      let released = 0
      const socket = Socket.make({
        reader: Effect.acquireRelease(
          Effect.succeed<Socket.Reader>({ pull: Effect.never, upgrade: Socket.SocketUpgradeError.unsupported }),
          () =>
            Effect.sync(() => {
              released = Date.now()
            })
        ),
        writer: Effect.succeed<Socket.Writer>({ write: () => Effect.void, writeAll: () => Effect.void })
      })
      const address = { _tag: "Pipe", name: "socket" } as const
      const connector: ChatClient.Connector = {
        target: "pipe:socket",
        open: Effect.succeed(Listener.fromSocket(socket, { localAddress: address, remoteAddress: address }))
      }
      yield* ChatClient.run(connector, Protocol.make(Terminator.lf, () => Chat.push("bye\n")))
      const ended = Date.now()
      yield* Effect.sleep("20 millis").pipe(Effect.repeat({ until: () => released > 0, times: 100 }))
      expect(released).toBeGreaterThan(0)
      expect(released - ended).toBeLessThan(1000)
    }))
})
