/**
 * What the tests over real transports share: servers on 127.0.0.1 port 0, a raw `node:net` peer that records
 * what it receives, child processes, and the protocols they serve.
 */
import { Deferred, Duration, Effect, Metric, Schedule, Stream } from "effect"
import { Buffer } from "node:buffer"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import * as NodeStream from "node:stream"
import * as NodeTls from "node:tls"
import type { Frame } from "../src/Framing.ts"
import { Chat, ChatClient, ChatMetrics, ChatServer, Listener, Protocol, Terminator } from "../src/index.ts"
import * as MemoryTransport from "../src/MemoryTransport.ts"
import { streamOf, text, Wakes } from "./helpers.ts"
import { tool } from "./tools.ts"

export const line = (frame: Frame): string => text(frame.bytes)

/** Echoes each line; a final unterminated frame comes back in brackets so the two cases can be told apart. */
export const Echo = Protocol.forEach(
  Terminator.lf,
  (frame) => frame.terminated ? Chat.push(frame.bytes, "\n") : Chat.push("[", frame.bytes, "]\n")
)

/** A TCP server on 127.0.0.1 with a port chosen by the system, shut down when the scope closes. */
export const tcpServer = <E, R>(protocol: Protocol.Protocol<E, R>, options?: ChatServer.Options, port = 0) =>
  Effect.flatMap(
    Listener.makeTcp({ host: "127.0.0.1", port }),
    (listener) => ChatServer.make(protocol, options).pipe(Effect.provideService(Listener.Listener, listener))
  )

export const portOf = (server: ChatServer.ChatServerShape): number => {
  if (server.address._tag !== "Inet") throw new Error(`not a TCP server: ${Chat.formatAddress(server.address)}`)
  return server.address.port
}

/**
 * A raw client (a `node:net` socket, or any Duplex: an end of the in-memory transport) that records everything
 * it receives and its FIN, close and error, so a test can wait for a state and then assert exact bytes.
 */
export class RawPeer<S extends NodeStream.Duplex = Net.Socket> {
  private readonly chunks: Array<Buffer> = []
  private readonly wakes = new Wakes()
  bytes = 0
  ended = false
  closed = false
  error: NodeJS.ErrnoException | undefined = undefined
  readonly socket: S

  constructor(socket: S, countOnly: boolean) {
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

  /** What each read received, one char per byte. */
  get pieces(): Array<string> {
    return this.chunks.map((chunk) => chunk.toString("latin1"))
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
export const rawConnect = (port: number, options: { readonly countOnly?: boolean; readonly paused?: boolean } = {}) =>
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

/**
 * A raw client of the in-memory server in context: its end of the pair, recording what it receives; with
 * `silent`, reading nothing (its window fills, and the server's writes wait).
 */
export const memoryPeer = (options: { readonly silent?: boolean } = {}) =>
  Effect.acquireRelease(
    Effect.map(
      Effect.flatMap(MemoryTransport.connector, (connector) => connector.open),
      (link) => new RawPeer(streamOf(link), options.silent === true)
    ),
    (peer) => Effect.sync(() => peer.socket.destroy())
  )

/** Polls `condition` every 10 ms until it holds or `timeout` passes; the caller asserts afterwards. */
export const settle = (condition: Effect.Effect<boolean>, timeout: Duration.Input = "2 seconds") =>
  condition.pipe(
    Effect.flatMap((ok) => (ok ? Effect.void : Effect.fail("not yet"))),
    Effect.retry(Schedule.spaced("10 millis")),
    Effect.timeoutOption(timeout),
    Effect.asVoid
  )

/** A port nobody listens on: bound on 0 and released again. */
export const freePort = Effect.callback<number>((resume) => {
  const server = Net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as Net.AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** TCP handles (sockets and listeners) of this process. */
export const tcpHandles = () => process.getActiveResourcesInfo().filter((name) => name.startsWith("TCP")).length

/** A child process, killed at scope close if it is still running. */
export const spawnChild = (command: string, args: ReadonlyArray<string> = []) =>
  Effect.acquireRelease(
    Effect.sync(() => ChildProcess.spawn(command, args, { stdio: ["pipe", "pipe", "inherit"] })),
    (child) => Effect.sync(() => void (child.exitCode === null && child.signalCode === null && child.kill("SIGKILL")))
  )

/**
 * HAProxy in TCP mode with `backends` (a frontend on a free port for each, relaying to our `port` with `server`'s
 * options), run in the foreground (`-db`) until the scope closes; returns the frontends' ports. `maxconn` (100)
 * bounds its connections, `timeout` (10s) its connect, client and server timeouts. Its readiness probe, one
 * connection to each frontend, reaches the backend too.
 */
export const startHaproxy = (
  backends: ReadonlyArray<string>,
  options: { readonly maxconn?: number; readonly timeout?: string } = {}
) =>
  Effect.gen(function*() {
    const ports: Array<number> = []
    for (const _ of backends) ports.push(yield* freePort)
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "asynchat-haproxy-"))
    yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true })))
    const config = Path.join(dir, "haproxy.cfg")
    Fs.writeFileSync(
      config,
      [
        "global",
        `  maxconn ${options.maxconn ?? 100}`,
        "defaults",
        "  mode tcp",
        "  timeout connect 2s",
        `  timeout client ${options.timeout ?? "10s"}`,
        `  timeout server ${options.timeout ?? "10s"}`,
        ...backends.flatMap((server, i) => [
          `frontend f${i}`,
          `  bind 127.0.0.1:${ports[i]}`,
          `  default_backend b${i}`,
          `backend b${i}`,
          `  server s${i} ${server}`
        ]),
        ""
      ].join("\n")
    )
    const child = yield* spawnChild("haproxy", ["-f", config, "-db"])
    child.stdout!.resume()
    // haproxy binds its frontends once it has read its configuration
    for (const port of ports) {
      yield* Effect.scoped(rawConnect(port)).pipe(
        Effect.retry({
          schedule: Schedule.spaced("50 millis"),
          times: 100,
          while: (error) => error.code === "ECONNREFUSED"
        })
      )
    }
    return { child, ports }
  })

/** How a child process ended; dies if it is still running after `timeout`. */
export const exitOf = (child: ChildProcess.ChildProcess, timeout: Duration.Input = "2 seconds") =>
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
export const watchedDuplexOf = (
  readable: NodeJS.ReadableStream,
  writable: NodeJS.WritableStream,
  unhandled: Array<Error>
) =>
  Effect.sync(() => {
    const duplex = ChatClient.duplexOf(readable, writable)
    duplex.on("error", (error) => void (duplex.listenerCount("error") === 1 && unhandled.push(error)))
    return duplex
  })

/** Reads every line until the peer's end of input, then, after an asynchronous step, answers once. */
export const CountLines = Protocol.make(Terminator.lf, (lines) =>
  Effect.gen(function*() {
    const count = yield* Stream.runCount(lines)
    // A real handler consults something before answering; here a short sleep stands for it.
    yield* Effect.sleep("20 millis")
    yield* Chat.push(`got ${count} lines\n`)
  }))

// Regression: node:net sockets must be half-open (`allowHalfOpen: true`), or Node ends our writing side on the
// tick after the peer's FIN and an answer written after end of input is dropped; that write then never
// completed (effect's NodeSocket waits for a `drain` on a closed socket), leaving the connection open.

/** A raw node:net server, half-open, that reads everything until the client's FIN, then answers and ends. */
export const readsToEndThenAnswers = Effect.acquireRelease(
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

/** Answers each line with how the server sees the connection's two ends. */
export const WhoAmI = Protocol.make(
  Terminator.lf,
  (lines) =>
    Stream.runForEach(lines, (frame) =>
      Effect.flatMap(Chat.Chat, (chat) =>
        chat.push(
          `${line(frame)} from ${Chat.formatAddress(chat.remoteAddress)} to ${Chat.formatAddress(chat.localAddress)}\n`
        )))
)

/** A fresh socket path in the temp directory, removed when the scope closes. */
export const socketPath = Effect.acquireRelease(
  Effect.sync(() => Path.join(Os.tmpdir(), `asynchat-${process.pid}-${Math.random().toString(36).slice(2)}.sock`)),
  (path) => Effect.sync(() => Fs.rmSync(path, { force: true }))
)

/** Connections ended so far by an error of `reason`. */
export const errorsOf = (reason: string) =>
  Effect.map(Metric.value(Metric.withAttributes(ChatMetrics.errors, { reason })), (s) => s.count)

/** A listener that hands over `stream` as soon as a server accepts. */
export const streamListener = (stream: NodeStream.Duplex) => {
  const address = { _tag: "Pipe", name: "duplex" } as const
  return Listener.Listener.of({
    address,
    accept: (onConnection) =>
      Effect.callback<never>(() => {
        onConnection(Listener.fromStream(stream, { localAddress: address, remoteAddress: address }))
      }),
    stopAccepting: Effect.void
  })
}

/** A Duplex that takes every write at once and records it; its reads are what the test pushes. */
export const recordingDuplex = () => {
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

/** Answers "done <line>" 200 ms after each line; "hang" never answers. `started` is set once a request began. */
export const Slow = (started: Deferred.Deferred<void>) =>
  Protocol.make(Terminator.lf, (lines) =>
    Stream.runForEach(lines, (frame) =>
      Effect.gen(function*() {
        yield* Deferred.succeed(started, undefined)
        if (line(frame) === "hang") return yield* Effect.never
        yield* Effect.sleep("200 millis")
        yield* Chat.push(`done ${line(frame)}\n`)
      })))

/** openssl, for the test certificates. */
export const openssl = tool("openssl", ["version"])

/** PEM files for TLS tests: a CA, a server certificate for localhost and 127.0.0.1, and a client's ("alice"). */
export interface Certificates {
  readonly dir: string
  readonly ca: string
  readonly serverKey: string
  readonly serverCert: string
  readonly clientKey: string
  readonly clientCert: string
  /** A second CA, which signed none of them. */
  readonly otherCa: string
}

let made: Certificates | undefined = undefined

/**
 * Makes the test certificates with openssl (EC keys: fast), once per test file, in a temporary directory:
 * none is committed.
 */
export const certificates = (): Certificates => {
  if (made !== undefined) return made
  openssl.require()
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "asynchat-tls-"))
  const run = (...args: Array<string>) => {
    const out = ChildProcess.spawnSync("openssl", args, { cwd: dir, encoding: "utf8" })
    if (out.status !== 0) throw new Error(`openssl ${args.join(" ")} failed: ${out.stderr}`)
  }
  const key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
  run("req", "-x509", ...key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=test-ca")
  run("req", "-x509", ...key, "-keyout", "other.key", "-out", "other.crt", "-days", "2", "-subj", "/CN=other-ca")
  Fs.writeFileSync(Path.join(dir, "server.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
  for (const [name, subject, ext] of [["server", "/CN=localhost", "server.ext"], ["client", "/CN=alice", ""]]) {
    run("req", ...key, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", subject)
    run(
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      `${name}.crt`,
      "-days",
      "2",
      ...(ext === "" ? [] : ["-extfile", ext])
    )
  }
  const read = (file: string) => Fs.readFileSync(Path.join(dir, file), "utf8")
  made = {
    dir,
    ca: read("ca.crt"),
    serverKey: read("server.key"),
    serverCert: read("server.crt"),
    clientKey: read("client.key"),
    clientCert: read("client.crt"),
    otherCa: read("other.crt")
  }
  process.once("exit", () => Fs.rmSync(dir, { recursive: true, force: true }))
  return made
}

/**
 * STARTTLS: `STARTTLS` is answered in plaintext (two lines queued before the upgrade, then `go ahead`), then the
 * connection is upgraded in place, and says so over TLS; every other line is echoed with what it came over. A
 * refused upgrade is answered.
 */
export const StartTlsEcho = (tls: Chat.StartTls) =>
  Protocol.forEach(Terminator.lf, (frame) =>
    Effect.gen(function*() {
      const chat = yield* Chat.Chat
      const line = Buffer.from(frame.bytes).toString()
      if (line !== "STARTTLS") return yield* chat.push(`${line} ${chat.tls === undefined ? "plain" : "tls"}\n`)
      yield* chat.push("plain 1\n", "plain 2\n")
      yield* chat.push("go ahead\n")
      const info = yield* chat.startTls(tls).pipe(
        Effect.catchReason(
          "ChatError",
          "HandshakeFailed",
          (reason) => Effect.as(chat.push(`refused: ${reason.message}\n`), undefined)
        )
      )
      if (info !== undefined) {
        const who = `${info.peerCertificate?.subject.CN ?? "none"}${info.authorized ? " authorized" : ""}`
        yield* chat.push(`secure ${info.alpnProtocol} ${who}\n`)
      }
    }))

/** STARTTLS as a server, with certificates made at test time (one options object: its context is made once). */
export const startTlsServer = (
  options: Partial<Chat.TlsServerOptions> = {}
): { readonly pems: Certificates; readonly tls: Chat.StartTls } => {
  const pems = certificates()
  return {
    pems,
    tls: { side: "server", key: pems.serverKey, cert: pems.serverCert, ALPNProtocols: ["x-chat"], ...options }
  }
}

/** A TLS client (`tls.connect(options)`: over a socket of the test's, or to a port), once its handshake is done. */
export const tlsClient = (options: NodeTls.ConnectionOptions) =>
  Effect.acquireRelease(
    Effect.callback<NodeTls.TLSSocket, Error>((resume) => {
      const socket = NodeTls.connect(options)
      socket.once("secureConnect", () => resume(Effect.succeed(socket)))
      socket.once("error", (error) => resume(Effect.fail(error)))
    }),
    (socket) => Effect.sync(() => socket.destroy())
  )
