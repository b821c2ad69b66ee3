/**
 * End-to-end tests over real transports: TCP on 127.0.0.1 (always port 0), Unix sockets, and a child
 * process's pipes. Peers are either our `ChatClient` or a raw `node:net` socket, so the server is checked
 * against a client that shares none of its code.
 */
import { assert, describe, expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber, Metric, Schedule, Scheduler, Scope, Stream } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import * as NodeStream from "node:stream"
import * as Framing from "../src/Framing.ts"
import type { Frame } from "../src/Framing.ts"
import { Chat, ChatClient, ChatMetrics, ChatServer, Listener, Protocol, Terminator } from "../src/index.ts"
import { captureLogs, show, text, Wakes } from "./helpers.ts"

// Helpers

const line = (frame: Frame): string => text(frame.bytes)

/** Echoes each line; a final unterminated frame comes back in brackets so the two cases can be told apart. */
const Echo = Protocol.frames(Terminator.lf, (lines) =>
  Stream.runForEach(
    lines,
    (frame) => frame.terminated ? Chat.push(frame.bytes, "\n") : Chat.push("[", frame.bytes, "]\n")
  ))

/** A TCP server on 127.0.0.1 with a port chosen by the system, shut down when the scope closes. */
const tcpServer = <E, R>(protocol: Protocol.Protocol<E, R>, options?: ChatServer.Options, port = 0) =>
  Effect.flatMap(
    Listener.makeTcp({ host: "127.0.0.1", port }),
    (listener) => ChatServer.make(protocol, options).pipe(Effect.provideService(Listener.Listener, listener))
  )

const portOf = (server: ChatServer.ChatServerShape): number => {
  if (server.address._tag !== "Inet") throw new Error(`not a TCP server: ${Chat.formatAddress(server.address)}`)
  return server.address.port
}

/**
 * A raw `node:net` client that records everything it receives and its FIN, close and error, so a test can
 * wait for a state and then assert exact bytes.
 */
class RawPeer {
  private readonly chunks: Array<Buffer> = []
  private readonly wakes = new Wakes()
  bytes = 0
  ended = false
  closed = false
  error: NodeJS.ErrnoException | undefined = undefined
  readonly socket: Net.Socket

  constructor(socket: Net.Socket, countOnly: boolean) {
    this.socket = socket
    // A 'data' listener would switch the socket to flowing mode, which `pause()` cannot undo under `onread`.
    if (!countOnly) socket.on("data", (data: Buffer) => this.received(data.length, data))
    socket.on("end", () => {
      this.ended = true
      this.wakes.wake()
    })
    socket.on("close", () => {
      this.closed = true
      this.wakes.wake()
    })
    socket.on("error", (error) => {
      this.error = error
      this.wakes.wake()
    })
  }

  received(size: number, data?: Buffer): void {
    if (data !== undefined) this.chunks.push(data)
    this.bytes += size
    this.wakes.wake()
  }

  /** What was received, one char per byte. */
  get text(): string {
    return Buffer.concat(this.chunks).toString("latin1")
  }

  /** Waits until `predicate` holds (checked on every socket event); dies after `timeout` saying what it saw. */
  until(what: string, predicate: (peer: this) => boolean, timeout: Duration.Input = "5 seconds"): Effect.Effect<void> {
    return this.wakes.until(
      () => predicate(this),
      timeout,
      () =>
        `timed out waiting for ${what}: got ${this.bytes} bytes ${JSON.stringify(this.text.slice(0, 200))}, ` +
        `ended ${this.ended}, closed ${this.closed}, error ${this.error?.code}`
    )
  }

  /** Waits for `expected` to have arrived in full. */
  receive(expected: string, timeout?: Duration.Input): Effect.Effect<void> {
    return this.until(JSON.stringify(expected), (peer) => peer.text.length >= expected.length, timeout)
  }

  write(data: string): Effect.Effect<void> {
    return Effect.sync(() => void this.socket.write(data))
  }
}

/**
 * Connects a raw client; fails with the socket's error (`ECONNREFUSED`...); destroyed when the scope closes.
 * With `countOnly`, received bytes are only counted, read into one reused buffer: a bulk transfer then
 * allocates nothing on the client's side, so the process's memory reflects the server's. With `paused`, it
 * reads nothing until `socket.resume()`.
 */
const rawConnect = (port: number, options: { readonly countOnly?: boolean; readonly paused?: boolean } = {}) =>
  Effect.acquireRelease(
    Effect.callback<RawPeer, NodeJS.ErrnoException>((resume) => {
      const target: { peer?: RawPeer } = {}
      const onread: Net.OnReadOpts = {
        buffer: Buffer.alloc(64 * 1024),
        callback: (size) => {
          target.peer?.received(size)
          return true
        }
      }
      const socket = Net.createConnection(
        options.countOnly === true ? { host: "127.0.0.1", port, onread } : { host: "127.0.0.1", port }
      )
      if (options.paused === true) socket.pause()
      const peer = new RawPeer(socket, options.countOnly === true)
      target.peer = peer
      socket.once("connect", () => resume(Effect.succeed(peer)))
      socket.once("error", (error) => resume(Effect.fail(error)))
      return Effect.sync(() => socket.destroy())
    }),
    (peer) => Effect.sync(() => peer.socket.destroy())
  )

/** Polls `condition` every 10 ms until it holds or `timeout` passes; the caller asserts afterwards. */
const settle = (condition: Effect.Effect<boolean>, timeout: Duration.Input = "2 seconds") =>
  condition.pipe(
    Effect.flatMap((ok) => (ok ? Effect.void : Effect.fail("not yet"))),
    Effect.retry(Schedule.spaced("10 millis")),
    Effect.timeoutOption(timeout),
    Effect.asVoid
  )

/** A port nobody listens on: bound on 0 and released again. */
const freePort = Effect.callback<number>((resume) => {
  const server = Net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as Net.AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** TCP handles (sockets and listeners) of this process. */
const tcpHandles = () => process.getActiveResourcesInfo().filter((name) => name.startsWith("TCP")).length

/** A child process, killed at scope close if it is still running. */
const spawnChild = (command: string, args: ReadonlyArray<string> = []) =>
  Effect.acquireRelease(
    Effect.sync(() => ChildProcess.spawn(command, args, { stdio: ["pipe", "pipe", "inherit"] })),
    (child) => Effect.sync(() => void (child.exitCode === null && child.signalCode === null && child.kill("SIGKILL")))
  )

/** How a child process ended; dies if it is still running after `timeout`. */
const exitOf = (child: ChildProcess.ChildProcess, timeout: Duration.Input = "2 seconds") =>
  Effect.callback<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      return resume(Effect.succeed({ code: child.exitCode, signal: child.signalCode }))
    }
    const onExit = (code: number | null, signal: NodeJS.Signals | null) => resume(Effect.succeed({ code, signal }))
    child.once("exit", onExit)
    return Effect.sync(() => child.off("exit", onExit))
  }).pipe(
    Effect.timeoutOrElse({
      duration: timeout,
      orElse: () =>
        Effect.die(
          new Error(`child ${child.pid} still running after ${Duration.format(Duration.fromInputUnsafe(timeout))}`)
        )
    })
  )

/**
 * `ChatClient.duplexOf(readable, writable)`, watched: an 'error' it emits while this helper is its only
 * listener is recorded in `unhandled` (in a real program it would be an uncaught exception).
 */
const watchedDuplexOf = (
  readable: NodeJS.ReadableStream,
  writable: NodeJS.WritableStream,
  unhandled: Array<Error>
) =>
  Effect.sync(() => {
    const duplex = ChatClient.duplexOf(readable, writable)
    duplex.on("error", (error) => void (duplex.listenerCount("error") === 1 && unhandled.push(error)))
    return duplex
  })

// 1. TCP echo with a raw client

describe("TCP echo with a raw node:net client", () => {
  it.live("binds 127.0.0.1 on a system-chosen port and echoes several lines sent in one write", () =>
    Effect.gen(function*() {
      const server = yield* tcpServer(Echo)
      expect(server.address).toEqual({ _tag: "Inet", host: "127.0.0.1", port: expect.any(Number) })
      expect(portOf(server)).toBeGreaterThan(0)
      const peer = yield* rawConnect(portOf(server))
      yield* peer.write("one\ntwo\n\nthree\n")
      yield* peer.receive("one\ntwo\n\nthree\n")
      expect(peer.text).toBe("one\ntwo\n\nthree\n")
    }))

  it.live("echoes 20,000 lines written at once, in order", () =>
    Effect.gen(function*() {
      const server = yield* tcpServer(Echo)
      const peer = yield* rawConnect(portOf(server))
      const payload = Array.from({ length: 20_000 }, (_, i) => `line ${i}\n`).join("")
      yield* peer.write(payload)
      yield* peer.receive(payload)
      expect(peer.text).toBe(payload)
    }))

  it.live("reassembles a line split over several writes and answers nothing before its terminator", () =>
    Effect.gen(function*() {
      const server = yield* tcpServer(Echo)
      const peer = yield* rawConnect(portOf(server))
      // No Nagle delay, and pauses between writes, so the pieces travel as separate segments.
      peer.socket.setNoDelay(true)
      yield* peer.write("hel")
      yield* Effect.sleep("30 millis")
      yield* peer.write("lo wor")
      yield* Effect.sleep("50 millis")
      expect(peer.text).toBe("")
      yield* peer.write("ld\nsecond")
      yield* Effect.sleep("30 millis")
      yield* peer.write(" line\n")
      yield* peer.receive("hello world\nsecond line\n")
      expect(peer.text).toBe("hello world\nsecond line\n")
    }))

  it.live("delivers an unterminated remainder as a final frame at the client's end of input", () =>
    Effect.gen(function*() {
      // Frames are recorded on the server side: answering after the client's FIN is tested below.
      const frames: Array<string> = []
      const server = yield* tcpServer(
        Protocol.frames(
          Terminator.lf,
          (lines) => Stream.runForEach(lines, (frame) => Effect.sync(() => frames.push(show(frame))))
        )
      )
      const peer = yield* rawConnect(portOf(server))
      peer.socket.write("a\nb")
      yield* Effect.sleep("20 millis")
      peer.socket.end("c\nrest")
      yield* peer.until("the server's FIN", (p) => p.ended)
      yield* settle(Effect.map(server.count, (n) => n === 0))
      expect(frames).toEqual(["a", "bc", "rest…"])
      expect(peer.text).toBe("")
    }))
})

// 2. Half-close

/** Reads every line until the peer's end of input, then, after an asynchronous step, answers once. */
const CountLines = Protocol.frames(Terminator.lf, (lines) =>
  Effect.gen(function*() {
    const count = yield* Stream.runCount(lines)
    // A real handler consults something before answering; here a short sleep stands for it.
    yield* Effect.sleep("20 millis")
    yield* Chat.push(`got ${count} lines\n`)
  }))

// Regression: node:net sockets must be half-open (`allowHalfOpen: true`), or Node ends our writing side on the
// tick after the peer's FIN and an answer written after end of input is dropped; that write then never
// completed (effect's NodeSocket waits for a `drain` on a closed socket), leaving the connection open.
describe("half-close over TCP", () => {
  it.live("a client's FIN ends the input but not the output: the answer arrives, then the server's FIN", () =>
    Effect.gen(function*() {
      const server = yield* tcpServer(CountLines, { shutdownTimeout: "200 millis" })
      const peer = yield* rawConnect(portOf(server))
      peer.socket.write("first\n")
      peer.socket.end("second\n")
      yield* peer.until("the server's FIN", (p) => p.ended)
      yield* peer.until("the socket to close", (p) => p.closed)
      expect(peer.text).toBe("got 2 lines\n")
      expect(peer.error).toBeUndefined()
    }))

  it.live("a connection that answered after the client's FIN closes rather than hang", () =>
    Effect.gen(function*() {
      const server = yield* tcpServer(CountLines, { shutdownTimeout: "200 millis" })
      const peer = yield* rawConnect(portOf(server))
      peer.socket.end("first\n")
      yield* peer.until("the socket to close", (p) => p.closed)
      yield* settle(Effect.map(server.count, (n) => n === 0), "1 second")
      expect(yield* server.count).toBe(0)
    }))
})

/** A raw node:net server, half-open, that reads everything until the client's FIN, then answers and ends. */
const readsToEndThenAnswers = Effect.acquireRelease(
  Effect.callback<Net.Server>((resume) => {
    const server = Net.createServer({ allowHalfOpen: true }, (socket) => {
      let size = 0
      socket.on("data", (data: Buffer) => (size += data.length))
      socket.on("end", () => setTimeout(() => socket.end(`got ${size} bytes\nbye\n`), 20))
    })
    server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
  }),
  (server) => Effect.sync(() => server.close())
)

describe("endOutput: a half-close of our own over TCP", () => {
  it.live("a client ends its output and keeps reading: a peer that reads to its end, then answers, is heard", () =>
    Effect.gen(function*() {
      const peer = yield* readsToEndThenAnswers
      const port = (peer.address() as Net.AddressInfo).port
      const client = yield* ChatClient.connect(ChatClient.tcp({ port }), { terminator: Terminator.lf })
      yield* client.chat.push("first\n", "second\n")
      yield* client.chat.endOutput
      yield* client.chat.push("dropped: the output is over\n")
      const answers = yield* client.input.pipe(Stream.map(line), Stream.runCollect, Effect.timeout("2 seconds"))
      expect(answers).toEqual(["got 13 bytes", "bye"])
    }))

  it.live("a server's handler ends its output and reads on: the client answers our FIN, and it is read", () =>
    Effect.gen(function*() {
      const heard: Array<string> = []
      const Ask = Protocol.frames(Terminator.lf, (lines) =>
        Effect.gen(function*() {
          yield* Chat.push("tell me everything\n")
          yield* Chat.endOutput
          yield* Stream.runForEach(lines, (frame) => Effect.sync(() => heard.push(line(frame))))
        }))
      const server = yield* tcpServer(Ask)
      const peer = yield* rawConnect(portOf(server))
      yield* peer.until("the server's FIN", (p) => p.ended)
      expect(peer.text).toBe("tell me everything\n")
      peer.socket.end("one\ntwo\n") // answered after the server's FIN, then our own
      yield* peer.until("the socket to close", (p) => p.closed)
      yield* settle(Effect.map(server.count, (n) => n === 0))
      expect(heard).toEqual(["one", "two"])
      expect(peer.error).toBeUndefined()
    }))
})

// 3. Unix sockets and ChatClient over TCP

/** Answers each line with how the server sees the connection's two ends. */
const WhoAmI = Protocol.frames(
  Terminator.lf,
  (lines) =>
    Stream.runForEach(lines, (frame) =>
      Effect.flatMap(Chat.Chat, (chat) =>
        chat.push(
          `${line(frame)} from ${Chat.formatAddress(chat.remoteAddress)} to ${Chat.formatAddress(chat.localAddress)}\n`
        )))
)

/** A fresh socket path in the temp directory, removed when the scope closes. */
const socketPath = Effect.acquireRelease(
  Effect.sync(() => Path.join(Os.tmpdir(), `asynchat-${process.pid}-${Math.random().toString(36).slice(2)}.sock`)),
  (path) => Effect.sync(() => Fs.rmSync(path, { force: true }))
)

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
      const server = yield* tcpServer(Protocol.frames(Terminator.lf, (lines) =>
        Stream.runHead(lines).pipe(
          Effect.flatMap((first) => Chat.push(`hi ${first._tag === "Some" ? line(first.value) : "?"}\n`))
        )))
      const received: Array<string> = []
      yield* ChatClient.run(
        ChatClient.tcp({ port: portOf(server) }),
        Protocol.frames(Terminator.lf, (lines) =>
          Chat.push("there\n").pipe(
            Effect.andThen(Stream.runForEach(lines, (frame) => Effect.sync(() => received.push(line(frame)))))
          ))
      ).pipe(Effect.timeout("5 seconds"))
      expect(received).toEqual(["hi there"])
    }))
})

// 4. Child processes

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
        Protocol.frames(Terminator.lf, (lines) =>
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

describe("Listener.makeTcp", () => {
  it.live("a port already in use fails with a typed SocketServerError whose message says so", () =>
    Effect.gen(function*() {
      const first = yield* Listener.makeTcp({ host: "127.0.0.1" })
      assert(first.address._tag === "Inet")
      const error = yield* Effect.flip(Listener.makeTcp({ host: "127.0.0.1", port: first.address.port }))
      expect(error._tag).toBe("SocketServerError")
      expect(error.reason._tag).toBe("SocketServerOpenError")
      expect(String(error.reason.cause)).toContain("EADDRINUSE")
      // the log's first line says why, not only Effect's "Open"
      expect(error.message).toBe(`Open: listen EADDRINUSE: address already in use 127.0.0.1:${first.address.port}`)
    }))

  it.live("hands over connections that arrived before accept ran, in order; stopAccepting leaves them open", () =>
    Effect.gen(function*() {
      const listener = yield* Listener.makeTcp({ host: "127.0.0.1" })
      assert(listener.address._tag === "Inet")
      const port = listener.address.port
      const a = yield* rawConnect(port)
      const b = yield* rawConnect(port)
      yield* Effect.sleep("50 millis") // both accepted by the kernel and by Node, with nobody accepting yet
      const links: Array<Listener.Link> = []
      const wakes = new Wakes()
      yield* Effect.forkScoped(listener.accept((link) => {
        links.push(link)
        wakes.wake()
      }))
      yield* wakes.until(() => links.length === 2, "5 seconds", () => `${links.length} links`)
      expect(links.map((link) => link.remoteAddress)).toEqual([
        { _tag: "Inet", host: "127.0.0.1", port: a.socket.localPort },
        { _tag: "Inet", host: "127.0.0.1", port: b.socket.localPort }
      ])
      yield* listener.stopAccepting
      const refused = yield* Effect.flip(rawConnect(port))
      expect(refused.code).toBe("ECONNREFUSED")
      // open connections are untouched: they still carry bytes both ways
      links[0].stream!.write("to a\n")
      yield* a.receive("to a\n")
      yield* b.write("from b\n")
      const stream = links[1].stream!
      stream.resume()
      const received = yield* Effect.callback<string>((resume) => {
        stream.once("data", (data: Buffer) => resume(Effect.succeed(data.toString())))
      })
      expect(received).toBe("from b\n")
    }))
})

// 5. Connect errors and retries

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
      let attempts = 0
      const tcp = ChatClient.tcp({ port })
      const counted: ChatClient.Connector = { ...tcp, open: Effect.suspend(() => (attempts++, tcp.open)) }
      const error = yield* Effect.flip(ChatClient.connect(counted, {
        terminator: Terminator.lf,
        retry: Schedule.spaced("10 millis").pipe(Schedule.upTo({ times: 3 }))
      }))
      expect(error.reason._tag).toBe("ConnectFailed")
      expect(attempts).toBe(4)
    }))

  it.live("with a retry schedule the client connects once a server starts listening on the port", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      let attempts = 0
      const tcp = ChatClient.tcp({ port })
      const counted: ChatClient.Connector = { ...tcp, open: Effect.suspend(() => (attempts++, tcp.open)) }
      // The server lives in the test's scope, the client in an inner one: the client's scope is created when it
      // starts connecting, before the server exists, and must still close first.
      const outer = yield* Effect.scope
      yield* Effect.gen(function*() {
        const connecting = yield* Effect.forkChild(ChatClient.connect(counted, {
          terminator: Terminator.lf,
          retry: Schedule.spaced("50 millis").pipe(Schedule.upTo({ times: 20 }))
        }))
        yield* Effect.sleep("250 millis")
        const refused = attempts
        const server = yield* tcpServer(Echo, {}, port).pipe(Scope.provide(outer))
        const client = yield* Fiber.join(connecting)
        expect(refused).toBeGreaterThanOrEqual(2)
        expect(attempts).toBeLessThanOrEqual(21)
        yield* client.chat.push("late\n")
        const echoed = yield* Stream.runHead(client.input)
        expect(echoed._tag === "Some" && line(echoed.value)).toBe("late")
        expect(yield* server.count).toBe(1)
      }).pipe(Effect.scoped)
    }))
})

// 6. No leaks

describe("no leaks", () => {
  it.live("1,000 connect/echo/close cycles leave no TCP handle and no connection behind", () =>
    Effect.gen(function*() {
      // Sockets of earlier tests may still be closing: start from a quiet process.
      yield* settle(Effect.sync(() => tcpHandles() === 0))
      const server = yield* tcpServer(Echo)
      const port = portOf(server)
      const before = tcpHandles()
      const cycle = (i: number) =>
        Effect.scoped(Effect.gen(function*() {
          const client = yield* ChatClient.connect(ChatClient.tcp({ port }), { terminator: Terminator.lf })
          yield* client.chat.push(`cycle ${i}\n`)
          const echoed = yield* Stream.runHead(client.input)
          if (echoed._tag !== "Some" || line(echoed.value) !== `cycle ${i}`) {
            return yield* Effect.die(new Error(`cycle ${i}: got ${JSON.stringify(echoed)}`))
          }
        }))
      yield* Effect.forEach(Array.from({ length: 1000 }, (_, i) => i), cycle, { concurrency: 20, discard: true })
      yield* settle(Effect.map(server.count, (n) => n === 0 && tcpHandles() === before))
      expect(tcpHandles()).toBe(before)
      expect(yield* server.count).toBe(0)
    }), 20_000)
})

// 7. Backpressure

describe("backpressure over TCP", () => {
  it.live("a client that does not read suspends push; once it reads it gets every byte", () =>
    Effect.gen(function*() {
      const total = 64 * 1024 * 1024
      const chunk = new Uint8Array(1024).fill(120)
      let pushed = 0
      const rssBefore = process.memoryUsage().rss
      const server = yield* tcpServer(Protocol.frames(Terminator.lf, () =>
        Effect.gen(function*() {
          while (pushed < total) {
            yield* Chat.push(chunk)
            pushed += chunk.length
          }
        })))
      const peer = yield* rawConnect(portOf(server), { countOnly: true, paused: true })
      yield* Effect.sleep("1 second")
      const stalled = pushed
      expect(peer.bytes).toBe(0)
      // Bounded by the output high-water mark plus Node's and the kernel's socket buffers.
      expect(stalled).toBeGreaterThan(0)
      expect(stalled).toBeLessThan(16 * 1024 * 1024)
      yield* Effect.sleep("200 millis")
      expect(pushed).toBe(stalled)
      peer.socket.resume()
      yield* peer.until("every byte and the FIN", (p) => p.ended, "15 seconds")
      expect(peer.bytes).toBe(total)
      expect(pushed).toBe(total)
      expect(process.memoryUsage().rss - rssBefore).toBeLessThan(64 * 1024 * 1024)
    }), 20_000)
})

describe("a machine that throws, over TCP", () => {
  it.live("closes only its own connection, after what was cut before the throw; the server serves on", () =>
    Effect.gen(function*() {
      // a machine with a bug: it throws on "boom" (it runs as bytes arrive, in the socket's own callback)
      const Buggy = Framing.machine<null, string, never>({
        initial: null,
        terminator: () => Terminator.lf,
        step: (state, frame) => {
          const line = text(frame.bytes)
          // an untyped throw is the point: a bug, not a failure the machine means
          // @effect-diagnostics-next-line globalErrorInEffectFailure:off
          if (line === "boom") throw new Error("a bug in a machine")
          return Framing.next(state, line)
        }
      })
      const server = yield* tcpServer(
        Protocol.machine(Buggy, (lines) => Stream.runForEach(lines, (line) => Chat.push(line, "\n"))),
        { shutdownTimeout: 0 }
      )
      const doomed = yield* rawConnect(portOf(server))
      // the line cut before the bug, in the same read, is still answered
      doomed.socket.write("one\nboom\nlost\n")
      yield* doomed.until("the close", (p) => p.closed || p.ended)
      expect(doomed.text).toBe("one\n")
      const other = yield* rawConnect(portOf(server))
      other.socket.write("two\n")
      yield* other.until("its echo", (p) => p.text === "two\n")
    }))

  it.live("one whose first terminator throws closes each connection it opens, as a defect; the server serves on", () =>
    Effect.gen(function*() {
      const before = yield* errorsOf("Defect")
      const NoStart = Framing.machine<null, string, never>({
        initial: null,
        terminator: () => {
          // @effect-diagnostics-next-line globalErrorInEffectFailure:off
          throw new Error("a bug in a machine's first terminator")
        },
        step: (state, frame) => Framing.next(state, text(frame.bytes))
      })
      const server = yield* tcpServer(Protocol.machine(NoStart, (lines) => Stream.runDrain(lines)), {
        shutdownTimeout: 0
      })
      for (let i = 0; i < 3; i++) {
        const peer = yield* rawConnect(portOf(server))
        yield* peer.until("the close", (p) => p.closed || p.ended)
      }
      yield* Effect.flatMap(Effect.sleep("20 millis"), () => server.count).pipe(
        Effect.repeat({ until: (n) => n === 0, times: 100 })
      )
      expect(yield* server.count).toBe(0)
      expect((yield* errorsOf("Defect")) - before).toBe(3)
    }))
})

/** Connections ended so far by an error of `reason`. */
const errorsOf = (reason: string) =>
  Effect.map(Metric.value(Metric.withAttributes(ChatMetrics.errors, { reason })), (s) => s.count)

describe("hang-ups over TCP", () => {
  it.live("a peer that hangs up as the server answers and closes is a normal end, not a write failure", () =>
    Effect.gen(function*() {
      const before = (yield* errorsOf("WriteFailed")) + (yield* errorsOf("ReadFailed"))
      const Bye = Protocol.frames(
        Terminator.lf,
        (lines) => Stream.runForEach(lines, () => Effect.andThen(Chat.push("bye\n"), Chat.closeWhenDone))
      )
      const server = yield* tcpServer(Bye)
      for (let i = 0; i < 20; i++) {
        const peer = yield* rawConnect(portOf(server))
        peer.socket.end("quit\n") // and goes: FIN right behind its request
      }
      yield* Effect.flatMap(Effect.sleep("50 millis"), () => server.count).pipe(
        Effect.repeat({ until: (n) => n === 0, times: 60 })
      )
      expect(yield* server.count).toBe(0)
      expect((yield* errorsOf("WriteFailed")) + (yield* errorsOf("ReadFailed")) - before).toBe(0)
    }))
})

describe("routine endings over TCP", () => {
  it.live("peers that reset their connections are logged at Debug, not as warnings, and counted", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const before = yield* errorsOf("ReadFailed")
      const resets = 40
      yield* Effect.gen(function*() {
        const server = yield* tcpServer(Echo)
        for (let i = 0; i < resets; i++) {
          const peer = yield* rawConnect(portOf(server))
          yield* peer.write("half a requ")
          yield* settle(Effect.map(server.count, (n) => n === 1))
          peer.socket.resetAndDestroy() // RST, as a client killed mid-request, or a NAT dropping it, sends
          yield* settle(Effect.map(server.count, (n) => n === 0))
        }
      }).pipe(Effect.scoped, Effect.provide(logs.layer))
      const ended = logs.lines.filter((line) => line.message.startsWith("connection closed by ReadFailed"))
      expect(ended.length, logs.messages()).toBe(resets)
      expect(ended.every((line) => line.level === "Debug")).toBe(true)
      expect(ended[0].message).toBe("connection closed by ReadFailed: Read failed: read ECONNRESET")
      expect(logs.lines.filter((line) => line.level === "Warn" || line.level === "Error")).toEqual([])
      expect((yield* errorsOf("ReadFailed")) - before).toBe(resets)
    }))
})

describe("write timeout over TCP", () => {
  it.live(
    "a peer that stops reading is let go after writeTimeout, and the server serves others meanwhile",
    () =>
      Effect.gen(function*() {
        const chunk = new Uint8Array(64 * 1024).fill(120)
        const Flood = Protocol.frames(Terminator.lf, (lines) =>
          Stream.runForEach(
            lines,
            (line) => text(line.bytes) === "flood" ? Effect.forever(Chat.push(chunk)) : Chat.push(line.bytes, "\n")
          ))
        const server = yield* tcpServer(Flood, { writeTimeout: "300 millis" })
        const stalled = yield* rawConnect(portOf(server), { countOnly: true, paused: true })
        stalled.socket.write("flood\n")
        yield* Effect.sleep("100 millis")
        expect(yield* server.count).toBe(1)
        const other = yield* rawConnect(portOf(server))
        other.socket.write("ping\n")
        yield* other.until("its echo", (p) => p.text === "ping\n")
        expect(yield* server.count).toBe(2)
        // the stalled one goes; the other stays
        const counted = yield* Effect.flatMap(Effect.sleep("50 millis"), () => server.count).pipe(
          Effect.repeat({ until: (n) => n === 1, times: 60 })
        )
        expect(counted).toBe(1)
        other.socket.write("pong\n")
        yield* other.until("its second echo", (p) => p.text === "ping\npong\n")
      }),
    10_000
  )
})

describe("read backpressure over TCP", () => {
  it.live(
    "a stalled handler stops the peer's writer: the server reads no further ahead than one read",
    () =>
      Effect.gen(function*() {
        let seen = 0
        const Stalls = Protocol.frames(Terminator.lf, (lines) =>
          Stream.runForEach(lines, () =>
            Effect.andThen(
              Effect.sync(() => seen++),
              Effect.never
            )))
        const server = yield* tcpServer(Stalls, { shutdownTimeout: 0 })
        const before = (yield* Metric.value(ChatMetrics.bytesIn)).count
        const peer = yield* rawConnect(portOf(server), { countOnly: true })
        const block = Buffer.alloc(1024 * 1024, "z")
        for (let i = 1; i <= 1024; i++) block[i * 1024 - 1] = 10
        // 64 MiB offered at once: far more than the socket buffers on both sides can hold
        for (let i = 0; i < 64; i++) peer.socket.write(block)
        yield* Effect.sleep("500 millis")
        const read = (yield* Metric.value(ChatMetrics.bytesIn)).count - before
        expect(seen).toBe(1)
        expect(read).toBeGreaterThan(0)
        expect(read).toBeLessThanOrEqual(1024 * 1024)
        yield* Effect.sleep("300 millis")
        expect((yield* Metric.value(ChatMetrics.bytesIn)).count - before).toBe(read)
        // what the kernel and Node could not take waits in the client: the writer is stopped, not buffered by us
        expect(peer.socket.writableLength).toBeGreaterThan(32 * 1024 * 1024)
      }),
    10_000
  )
})

/** A listener that hands over `stream` as soon as a server accepts. */
const streamListener = (stream: NodeStream.Duplex) => {
  const address = { _tag: "Pipe", name: "duplex" } as const
  return Listener.Listener.of({
    address,
    accept: (onConnection) =>
      Effect.callback<never>(() => {
        onConnection({
          socket: undefined as never,
          stream,
          localAddress: address,
          remoteAddress: address,
          onClosed: Listener.onClosedOf(stream)
        })
      }),
    stopAccepting: Effect.void
  })
}

/** A Duplex that takes every write at once and records it; its reads are what the test pushes. */
const recordingDuplex = () => {
  const written: Array<Buffer> = []
  const stream = new NodeStream.Duplex({
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      written.push(chunk)
      callback()
    }
  })
  return { stream, written }
}

describe("a listener of Node streams", () => {
  it.live("a frame whose rest waits behind our own pause is not timed out while the handler is busy", () =>
    Effect.gen(function*() {
      const { stream, written } = recordingDuplex()
      const SlowFirst = Protocol.frames(Terminator.lf, (lines) =>
        Stream.runForEach(lines, (frame) =>
          Effect.andThen(
            text(frame.bytes) === "a" ? Effect.sleep("400 millis") : Effect.void,
            Chat.push(frame.bytes, "\n")
          )))
      yield* ChatServer.make(SlowFirst, { idleTimeout: Duration.infinity, frameTimeout: "200 millis" }).pipe(
        Effect.provideService(Listener.Listener, streamListener(stream))
      )
      // all of "xxyyzz" arrives within 40 ms; the handler is busy with "a" for 400
      stream.push("a\nxx")
      yield* Effect.sleep("20 millis")
      stream.push("yy")
      yield* Effect.sleep("20 millis")
      stream.push("zz\n")
      yield* Effect.sleep("800 millis")
      expect(Buffer.concat(written).toString()).toBe("a\nxxyyzz\n")
    }))

  // Regression: a stream closed before its connection opened was never noticed (its 'close' had come and
  // gone), and the connection was served forever.
  it.live("a stream that closed before its connection opened ends that connection at once", () =>
    Effect.gen(function*() {
      const { stream } = recordingDuplex()
      stream.destroy()
      yield* Effect.promise(() => new Promise((resolve) => stream.once("close", resolve)))
      const server = yield* ChatServer.make(Echo, { idleTimeout: Duration.infinity }).pipe(
        Effect.provideService(Listener.Listener, streamListener(stream))
      )
      yield* Effect.sleep("50 millis")
      expect(yield* server.count).toBe(0)
    }))

  // Regression: a read that the peer answered inside our own write ran our handler there, whose output then
  // started a second writer beside the first: a producer's output came after what was pushed behind it, or
  // was cut off by the close marker.
  for (const ending of ["a push", "closeWhenDone"] as const) {
    it.live(`a peer that answers inside our write keeps the order of a producer and ${ending} after it`, () =>
      Effect.gen(function*() {
        const written: Array<string> = []
        const stream = new NodeStream.Duplex({
          read() {},
          write(chunk: Buffer, _encoding, callback) {
            written.push(chunk.toString())
            if (chunk.toString().includes("r1")) this.push("go\n") // the peer answers inside our write
            callback()
          }
        })
        const P = Protocol.frames(Terminator.lf, (lines) =>
          Stream.runForEach(lines, (frame) => {
            const line = text(frame.bytes)
            if (line === "start") {
              // from another fiber: the write goes out on a scheduler turn, outside any read
              return Effect.asVoid(Effect.forkChild(Effect.andThen(Effect.sleep("10 millis"), Chat.push("r1\n"))))
            }
            if (line !== "go") return Effect.void
            return Effect.gen(function*() {
              yield* Chat.push("X\n")
              yield* Chat.pushStream(Stream.fromEffect(Effect.as(Effect.sleep("20 millis"), Buffer.from("p1\n"))))
              yield* ending === "a push" ? Chat.push("Y\n") : Chat.closeWhenDone
            })
          }))
        yield* ChatServer.make(P, { idleTimeout: Duration.infinity }).pipe(
          Effect.provideService(Listener.Listener, streamListener(stream))
        )
        stream.push("start\n")
        yield* Effect.sleep("200 millis")
        expect(written.join("")).toBe(ending === "a push" ? "r1\nX\np1\nY\n" : "r1\nX\np1\n")
      }))
  }

  it.live("writeTimeout spares a slow peer that keeps taking bytes", () =>
    Effect.gen(function*() {
      const timedOut = Metric.withAttributes(ChatMetrics.errors, { reason: "WriteTimeout" })
      const before = (yield* Metric.value(timedOut)).count
      let written = 0
      const stream = new NodeStream.Duplex({
        read() {},
        write(chunk: Buffer, _encoding, callback) {
          written += chunk.length
          setTimeout(callback, 20) // 20 KiB every 20 ms: the whole answer takes 400 ms
        }
      })
      const Big = Protocol.frames(Terminator.lf, (lines) =>
        Stream.runForEach(lines, () =>
          Effect.andThen(
            Chat.push(...Array.from({ length: 20 }, () => Buffer.alloc(20 * 1024, "x"))),
            Chat.push("end\n")
          )))
      const server = yield* ChatServer.make(Big, { writeTimeout: "200 millis" }).pipe(
        Effect.provideService(Listener.Listener, streamListener(stream))
      )
      stream.push("go\n")
      yield* Effect.sleep("1 second")
      expect((yield* Metric.value(timedOut)).count - before).toBe(0)
      expect(written).toBe(20 * 20 * 1024 + 4)
      expect(yield* server.count).toBe(1)
      stream.destroy()
    }))

  it.live("closeWhenDone hangs up only once a slow peer has taken the whole answer", () =>
    Effect.gen(function*() {
      let written = 0
      const stream = new NodeStream.Duplex({
        read() {},
        write(chunk: Buffer, _encoding, callback) {
          // slow but steady: longer, in all, than a closing socket is given to drain
          setTimeout(() => {
            written += chunk.length
            callback()
          }, 1500)
        }
      })
      const Quit = Protocol.frames(Terminator.lf, (lines) =>
        Stream.runForEach(lines, () =>
          Effect.andThen(
            Chat.push(...Array.from({ length: 4 }, () => Buffer.alloc(15 * 1024, "x"))),
            Chat.closeWhenDone
          )))
      yield* ChatServer.make(Quit).pipe(Effect.provideService(Listener.Listener, streamListener(stream)))
      stream.push("quit\n")
      yield* Effect.sleep("100 millis").pipe(Effect.repeat({
        until: () => stream.destroyed,
        times: 100
      }))
      expect(written).toBe(60 * 1024)
      expect(stream.writableFinished).toBe(true)
    }), 20_000)

  it.live(
    "a stream that pushes back on every write and drains a tick later gets every answer",
    () =>
      Effect.gen(function*() {
        const written: Array<Buffer> = []
        // takes each write, reports backpressure (high-water mark 1), and emits 'drain' on the next tick
        const stream = new NodeStream.Duplex({
          writableHighWaterMark: 1,
          read() {},
          write(chunk: Buffer, _encoding, callback) {
            written.push(chunk)
            process.nextTick(callback)
          }
        })
        // fibers yield to the scheduler every few steps: a 'drain' can come before the wait for it starts
        yield* ChatServer.make(Echo, { shutdownTimeout: 0 }).pipe(
          Effect.provideService(Listener.Listener, streamListener(stream)),
          Effect.provideService(Scheduler.MaxOpsBeforeYield, 3)
        )
        let expected = ""
        for (let n = 1; n <= 60; n++) {
          const batch = Array.from({ length: n }, (_, i) => `${n}.${i}\n`).join("")
          expected += batch
          stream.push(batch)
          yield* Effect.sleep("1 millis").pipe(
            Effect.repeat({ until: () => Buffer.concat(written).length >= expected.length, times: 500 })
          )
        }
        expect(Buffer.concat(written).toString()).toBe(expected)
        stream.destroy()
      }),
    20_000
  )

  it.live("serves a connection it hands over from inside accept, reading and writing the Duplex directly", () =>
    Effect.gen(function*() {
      const { stream, written } = recordingDuplex()
      // a listener with a connection already waiting: it is handed over as soon as the server accepts
      const server = yield* ChatServer.make(Echo).pipe(Effect.provideService(Listener.Listener, streamListener(stream)))
      stream.push("one\ntw")
      stream.push(Buffer.from("o\nthree"))
      stream.push(null)
      yield* Effect.sleep("50 millis").pipe(Effect.repeat({ until: () => stream.destroyed, times: 40 }))
      expect(Buffer.concat(written).toString()).toBe("one\ntwo\n[three]\n")
      expect(stream.writableFinished).toBe(true)
      expect(stream.destroyed).toBe(true)
      expect(yield* server.count).toBe(0)
    }))
})

// 8. Max connections

describe("maxConnections over TCP", () => {
  it.live("refuses a connection beyond the limit with rejectMessage, and serves again once one closes", () =>
    Effect.gen(function*() {
      const server = yield* tcpServer(Echo, { maxConnections: 2, rejectMessage: "busy\r\n" })
      const port = portOf(server)
      // Each held client has its own scope, closed by the test or else with it.
      const outer = yield* Effect.scope
      const hold = (name: string) =>
        Effect.gen(function*() {
          const scope = yield* Scope.fork(outer)
          const client = yield* ChatClient.connect(ChatClient.tcp({ port }), { terminator: Terminator.lf }).pipe(
            Scope.provide(scope)
          )
          yield* client.chat.push(`${name}\n`)
          const echoed = yield* Stream.runHead(client.input)
          expect(echoed._tag === "Some" && line(echoed.value)).toBe(name)
          return scope
        })
      const first = yield* hold("first")
      const second = yield* hold("second")
      expect(yield* server.count).toBe(2)

      const third = yield* rawConnect(port)
      yield* third.write("third\n")
      yield* third.until("the server's FIN", (p) => p.ended)
      expect(third.text).toBe("busy\r\n")

      yield* Scope.close(first, Exit.void)
      yield* settle(Effect.map(server.count, (n) => n === 1))
      expect(yield* server.count).toBe(1)
      // the slot is free as soon as the count says so
      const fourth = yield* rawConnect(port)
      yield* fourth.write("fourth\n")
      yield* fourth.receive("fourth\n")
      expect(fourth.text).toBe("fourth\n")
      expect(fourth.ended).toBe(false)
      expect(yield* server.count).toBe(2)
      yield* Scope.close(second, Exit.void)
    }))
})

// 9. Graceful shutdown

/** Answers "done <line>" 200 ms after each line; "hang" never answers. `started` is set once a request began. */
const Slow = (started: Deferred.Deferred<void>) =>
  Protocol.frames(Terminator.lf, (lines) =>
    Stream.runForEach(lines, (frame) =>
      Effect.gen(function*() {
        yield* Deferred.succeed(started, undefined)
        if (line(frame) === "hang") return yield* Effect.never
        yield* Effect.sleep("200 millis")
        yield* Chat.push(`done ${line(frame)}\n`)
      })))

describe("graceful shutdown over TCP", () => {
  it.live("finishes a request in progress while refusing new connections", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      // Closed by the test, or else with the test's scope.
      const serverScope = yield* Scope.fork(yield* Effect.scope)
      const server = yield* tcpServer(Slow(started)).pipe(Scope.provide(serverScope))
      const port = portOf(server)
      const peer = yield* rawConnect(port)
      yield* peer.write("slow\n")
      yield* Deferred.await(started)

      const shutdown = yield* Effect.forkChild(Effect.timed(Scope.close(serverScope, Exit.void)))
      yield* Effect.sleep("20 millis")
      const refused = yield* Effect.flip(rawConnect(port))
      expect(refused.code).toBe("ECONNREFUSED")
      // Refused while the request was still being served.
      expect(peer.text).toBe("")

      yield* peer.receive("done slow\n")
      expect(peer.text).toBe("done slow\n")
      peer.socket.end()
      yield* peer.until("the server's FIN", (p) => p.ended)
      const [took] = yield* Fiber.join(shutdown)
      // Done as soon as the connection was, far from the default 5 s shutdown timeout.
      expect(Duration.toMillis(took)).toBeLessThan(1500)
      expect(yield* server.count).toBe(0)
    }))

  it.live("interrupts a connection that never finishes after shutdownTimeout", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      // Closed by the test, or else with the test's scope.
      const serverScope = yield* Scope.fork(yield* Effect.scope)
      const server = yield* tcpServer(Slow(started), { shutdownTimeout: "300 millis" }).pipe(
        Scope.provide(serverScope)
      )
      const peer = yield* rawConnect(portOf(server))
      yield* peer.write("hang\n")
      yield* Deferred.await(started)

      const [took] = yield* Effect.timed(Scope.close(serverScope, Exit.void))
      expect(Duration.toMillis(took)).toBeGreaterThanOrEqual(250)
      expect(Duration.toMillis(took)).toBeLessThan(2000)
      yield* peer.until("the socket to close", (p) => p.closed, "1 second")
      expect(peer.text).toBe("")
      expect(yield* server.count).toBe(0)
    }))

  // Regression: a client that vanished while its request was served left the connection open until shutdown
  // when the answer was written after the socket closed (see the half-close tests for the mechanism).
  it.live("a client that disconnects during a slow request does not leave its connection open", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      const server = yield* tcpServer(Slow(started), { shutdownTimeout: "200 millis" })
      const peer = yield* rawConnect(portOf(server))
      yield* peer.write("slow\n")
      yield* Deferred.await(started)
      peer.socket.destroy()
      // The answer is due 200 ms after the request started.
      yield* Effect.sleep("300 millis")
      yield* settle(Effect.map(server.count, (n) => n === 0), "1 second")
      expect(yield* server.count).toBe(0)
    }))

  // Regression: a write to a socket that is already destroyed never completed (effect's NodeSocket `write`
  // returns false and waits for a `drain`, `error` or `close` that were all emitted before), so a connection
  // reset during a slow request lingered; the writer now races the transport's close.
  it.live("a client that resets the connection during a slow request has its connection closed at once", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      const server = yield* tcpServer(Slow(started), { shutdownTimeout: "200 millis" })
      const peer = yield* rawConnect(portOf(server))
      yield* peer.write("slow\n")
      yield* Deferred.await(started)
      peer.socket.resetAndDestroy()
      yield* Effect.sleep("300 millis")
      yield* settle(Effect.map(server.count, (n) => n === 0), "1 second")
      expect(yield* server.count).toBe(0)
    }))
})
