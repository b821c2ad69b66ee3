/**
 * What the end-to-end tests of the seed examples (echo, echo-chat, stdio, chatroom) share: our server on
 * 127.0.0.1 with a port the system picks, and peers that share none of our code: child processes (nc, CPython,
 * the examples' CLI) and raw `node:net` sockets. Every peer records what it receives, so a test can wait for
 * exact bytes and then assert them; every wait is bounded and says what it saw when it gives up.
 */
import { Duration, Effect, type Scope } from "effect"
import { Buffer } from "node:buffer"
import * as ChildProcess from "node:child_process"
import * as Net from "node:net"
import * as Path from "node:path"
import { Chat, ChatServer, Listener, type Protocol } from "../../src/index.ts"
import { Wakes } from "../helpers.ts"

/** The repository root, where the examples' CLI runs. */
export const root = Path.resolve(import.meta.dirname, "../..")

/** Serves `protocol` on 127.0.0.1:0, runs `body` with the port chosen, then shuts the server down. */
export const serve = <E, R, A, EB, RB>(
  protocol: Protocol.Protocol<E, R>,
  options: ChatServer.Options,
  body: (port: number, server: ChatServer.ChatServerShape) => Effect.Effect<A, EB, RB>
) =>
  Effect.scoped(Effect.gen(function*() {
    const server = yield* ChatServer.make(protocol, options)
    if (server.address._tag !== "Inet") return yield* Effect.die(`not TCP: ${Chat.formatAddress(server.address)}`)
    return yield* body(server.address.port, server)
  })).pipe(Effect.provide(Listener.layerTcp({ host: "127.0.0.1", port: 0 })))

/** Waits (up to 2.5 seconds) until the server has `n` open connections; then it asserts that number. */
export const settleCount = (server: ChatServer.ChatServerShape, n: number) =>
  Effect.gen(function*() {
    for (let i = 0; i < 250 && (yield* server.count) !== n; i++) yield* Effect.sleep("10 millis")
    return yield* server.count
  })

/** Bytes received from a stream or socket, with a way to wait for a state of them. */
export class Received {
  private readonly chunks: Array<Buffer> = []
  private readonly wakes = new Wakes()
  /** The sender's end of stream arrived. */
  ended = false

  readonly name: string

  constructor(name: string) {
    this.name = name
  }

  add(chunk: Buffer): void {
    this.chunks.push(chunk)
    this.wakes.wake()
  }

  end(): void {
    this.ended = true
    this.wakes.wake()
  }

  get bytes(): Buffer {
    return Buffer.concat(this.chunks)
  }

  /** UTF-8 text of everything received. */
  get text(): string {
    return this.bytes.toString("utf8")
  }

  /** The complete lines received so far. */
  get lines(): Array<string> {
    return this.text.split("\n").slice(0, -1)
  }

  /** Waits until `predicate` holds; dies after `timeout` with what arrived. */
  until(what: string, predicate: (received: this) => boolean, timeout: Duration.Input = "5 seconds") {
    return this.wakes.until(
      () => predicate(this),
      timeout,
      () =>
        `${this.name}: timed out after ${Duration.format(Duration.fromInputUnsafe(timeout))} waiting for ` +
        `${what}; got ${JSON.stringify(this.text.slice(-400))} (${this.bytes.length} bytes), ended ${this.ended}`
    )
  }

  /** Waits until at least `n` bytes arrived. */
  atLeast(n: number, timeout?: Duration.Input) {
    return this.until(`${n} bytes`, (r) => r.bytes.length >= n, timeout)
  }

  /** Waits until the text received contains `text`. */
  contains(text: string, timeout?: Duration.Input) {
    return this.until(JSON.stringify(text), (r) => r.text.includes(text), timeout)
  }

  /** Waits for the sender's end of stream. */
  endOf(timeout?: Duration.Input) {
    return this.until("the end of stream", (r) => r.ended, timeout)
  }
}

/** How a child process ended. */
export interface Exited {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stderr: string
}

/** A running child process with its output recorded. */
export interface Child {
  readonly process: ChildProcess.ChildProcessWithoutNullStreams
  readonly stdout: Received
  readonly stderr: Received
  readonly write: (data: string | Uint8Array) => Effect.Effect<void>
  /** Writes `data` (if any), then closes the child's stdin. */
  readonly end: (data?: string | Uint8Array) => Effect.Effect<void>
  /**
   * How it ended, once it has, with its stderr (shown by a failed `toMatchObject({ code, signal })`); dies, saying
   * what it wrote, if it still runs after `timeout`.
   */
  readonly exit: (timeout?: Duration.Input) => Effect.Effect<Exited>
}

/**
 * Spawns `command` with piped stdio in the repository root, owned by the scope: killed when the scope closes if
 * it still runs, and killed anyway after `timeout` (default 15 seconds).
 */
export const spawn = (
  command: string,
  args: ReadonlyArray<string>,
  options: { readonly timeout?: Duration.Input } = {}
): Effect.Effect<Child, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const timeout = Duration.toMillis(Duration.fromInputUnsafe(options.timeout ?? "15 seconds"))
      const child = ChildProcess.spawn(command, args, { cwd: root, stdio: "pipe", timeout, killSignal: "SIGKILL" })
      const name = [command, ...args].map((a) => Path.basename(a)).join(" ")
      const stdout = new Received(`${name} (stdout)`)
      const stderr = new Received(`${name} (stderr)`)
      child.stdout.on("data", (data: Buffer) => stdout.add(data))
      child.stdout.on("end", () => stdout.end())
      child.stderr.on("data", (data: Buffer) => stderr.add(data))
      child.stderr.on("end", () => stderr.end())
      // a child that exited before reading all its input makes our writes fail with EPIPE: that is its exit's story
      child.stdin.on("error", () => {})
      const exited = () => child.exitCode !== null || child.signalCode !== null
      return {
        process: child,
        stdout,
        stderr,
        write: (data) => Effect.sync(() => void child.stdin.write(data)),
        end: (data) => Effect.sync(() => void (data === undefined ? child.stdin.end() : child.stdin.end(data))),
        exit: (wait = "5 seconds") =>
          Effect.callback<Exited>((resume) => {
            // 'close' rather than 'exit': by then stdout and stderr are fully read
            const done = () =>
              resume(Effect.succeed({ code: child.exitCode, signal: child.signalCode, stderr: stderr.text }))
            if (exited() && child.stdout.readableEnded && child.stderr.readableEnded) return done()
            child.once("close", done)
            return Effect.sync(() => void child.off("close", done))
          }).pipe(
            Effect.timeoutOrElse({
              duration: wait,
              orElse: () =>
                Effect.die(
                  new Error(`${name} still running; stdout ${stdout.text}\nstderr ${stderr.text.slice(-2000)}`)
                )
            })
          )
      } satisfies Child
    }),
    (child) =>
      Effect.sync(() => {
        if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill("SIGKILL")
      })
  )

/** The examples' CLI as `npm start -- <args>` runs it, without npm in between (npm would print on stdout). */
export const cli = (...args: ReadonlyArray<string>) =>
  spawn(process.execPath, ["--conditions=@effect-asynchat/source", "examples/cli.ts", ...args])

/** The port an example's CLI server prints when it starts: `<name> listening on 127.0.0.1:<port>`. */
export const listeningPort = (child: Child) =>
  Effect.gen(function*() {
    yield* child.stdout.until("the listening line", (r) => /listening on 127\.0\.0\.1:\d+/.test(r.text), "10 seconds")
    return Number(/listening on 127\.0\.0\.1:(\d+)/.exec(child.stdout.text)![1])
  })

/** A raw `node:net` client, half-open (it may end its side and still read), destroyed with the scope. */
export interface Peer {
  readonly socket: Net.Socket
  readonly received: Received
  readonly write: (data: string | Uint8Array) => Effect.Effect<void>
  /** Sends a FIN after `data`, if any. */
  readonly end: (data?: string | Uint8Array) => Effect.Effect<void>
}

/** Connects a raw client to 127.0.0.1:`port`. */
export const connect = (port: number, name = `client of :${port}`): Effect.Effect<Peer, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<Peer>((resume) => {
      const socket = Net.createConnection({ host: "127.0.0.1", port, allowHalfOpen: true })
      const received = new Received(name)
      socket.on("data", (data: Buffer) => received.add(data))
      socket.on("end", () => received.end())
      socket.once("error", (error) => resume(Effect.die(error)))
      socket.once("connect", () => {
        // later errors (a reset) show as an end of stream with what arrived before it
        socket.on("error", () => received.end())
        resume(Effect.succeed({
          socket,
          received,
          write: (data) => Effect.sync(() => void socket.write(data)),
          end: (data) => Effect.sync(() => void (data === undefined ? socket.end() : socket.end(data)))
        }))
      })
      return Effect.sync(() => socket.destroy())
    }),
    (peer) => Effect.sync(() => peer.socket.destroy())
  )

/** Deterministic bytes, every value 0..255 in each aligned 256 of them (newlines included), varied by `seed`. */
export const binary = (size: number, seed = size): Buffer => {
  const out = Buffer.alloc(size)
  // 167 is odd, so i * 167 runs through every residue mod 256 over any 256 consecutive i
  for (let i = 0; i < size; i++) out[i] = (i * 167 + (i >> 8) * 13 + seed * 31) & 0xff
  return out
}

/** A free loopback port: bound, read, released (another program may take it before it is used). */
export const freePort = Effect.promise(() =>
  new Promise<number>((resolve) => {
    const server = Net.createServer().listen(0, "127.0.0.1", () => {
      const address = server.address() as Net.AddressInfo
      server.close(() => resolve(address.port))
    })
  })
)

/** A real redis-server on 127.0.0.1:`port`, without persistence, killed with the scope (or by its `process`). */
export const redisServerOn = (port: number) =>
  Effect.gen(function*() {
    const child = yield* spawn(
      "redis-server",
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      { timeout: "60 seconds" }
    )
    yield* child.stdout.contains("Ready to accept connections", "10 seconds")
    return child
  })

/** Waits until `n` workers of the examples' supervisor `child` listen and their channel maps reached Redis. */
export const workersOnRedis = (child: Child, n: number) =>
  child.stdout.until(
    `${n} workers listening and connected to Redis`,
    (r) =>
      (r.text.match(/listening on 127\.0\.0\.1:\d+ \(worker \d+/g) ?? []).length >= n &&
      (r.text.match(/connected to Redis/g) ?? []).length >= n,
    "20 seconds"
  )
