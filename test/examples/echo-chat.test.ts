/**
 * examples/echo-chat.ts, the ECHO protocol of seed 003, end to end over TCP on 127.0.0.1: our client and server
 * together, each against the seed's own Python programs run by CPython 3.11's asynchat (test/cpython/
 * asynchat_echo_server.py and asynchat_echo_client.py, the seed ported to Python 3), raw clients sending exact
 * bytes, and the example's command line in its three roles.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Logger, References, Stream } from "effect"
import { Buffer } from "node:buffer"
import { fileURLToPath } from "node:url"
import {
  CopyMismatch,
  echo,
  EchoHandler,
  EchoReply,
  LOREM,
  MAX_BODY,
  parseCommand,
  serverOptions
} from "../../examples/echo-chat.ts"
import { Chat, Framing, Protocol, Terminator } from "../../src/index.ts"
import { python } from "../tools.ts"
import { binary, cli, connect, listeningPort, serve, spawn } from "./peers.ts"

const SERVER_PY = fileURLToPath(new URL("../cpython/asynchat_echo_server.py", import.meta.url))
const CLIENT_PY = fileURLToPath(new URL("../cpython/asynchat_echo_client.py", import.meta.url))

const pyIt = python.available ? it.live : it.live.skip

/** The sizes the seed's programs handle (they read 0 as "no terminator": see below), lorem.txt among them. */
const SIZES = [1, 64, 65, 701, 10_000]
const bodyOf = (size: number): Buffer => size === 701 ? Buffer.from(LOREM) : binary(size)

/** The seed's Python EchoServer, serving one client on the port it prints. */
const pythonServer = Effect.gen(function*() {
  const child = yield* spawn("python3", [SERVER_PY])
  yield* child.stdout.until("the port", (r) => /^\d+\n/.test(r.text))
  return { child, port: Number(child.stdout.text.trim()) }
})

/** The seed's Python EchoClient sending `message` to `port`; its exit status is its verdict. */
const pythonClient = (port: number, message: Uint8Array) =>
  Effect.gen(function*() {
    const child = yield* spawn("python3", [CLIENT_PY, "127.0.0.1", String(port)])
    yield* child.end(message)
    return yield* child.exit()
  })

/** A wrong server: it reads `ECHO <n>` and the n bytes, as the real one does, but answers `lie(body)`. */
const Liar = (lie: (body: string) => string) =>
  Protocol.make(
    Framing.machine<number | undefined, Uint8Array>({
      initial: undefined,
      terminator: (n) => n === undefined ? Terminator.lf : Terminator.length(n),
      step: (n, frame) =>
        n === undefined
          ? Framing.next(parseCommand(new TextDecoder().decode(frame.bytes)))
          : Framing.next(undefined, frame.bytes)
    }),
    (bodies) =>
      Stream.runHead(bodies).pipe(
        Effect.flatMap((body) => Chat.push(lie(body._tag === "Some" ? Buffer.from(body.value).toString() : ""))),
        Effect.andThen(Chat.closeWhenDone)
      )
  )

/** How our client judges the answer of `Liar(lie)` to "hello world". */
const verdict = (lie: (body: string) => string) =>
  serve(Liar(lie), {}, (port) => echo({ host: "127.0.0.1", port, message: Buffer.from("hello world") })).pipe(
    Effect.flip,
    Effect.map((error) => error instanceof CopyMismatch ? error.message : `not a CopyMismatch: ${error}`)
  )

/** The client's machine alone, over `chunks`. */
const decodeReply = (length: number, ...chunks: Array<string>) =>
  Stream.fromIterable(chunks.map((c) => Buffer.from(c))).pipe(
    Framing.decode(EchoReply(length)),
    Stream.map((copy) => Buffer.from(copy).toString()),
    Stream.runCollect,
    Effect.mapError((error) => error.message)
  )

describe("echo-chat: our client and our server", () => {
  it.live("agree on bodies of 0, 1, 64, 65, 701 and 10,000 bytes, newlines and all byte values included", () =>
    serve(EchoHandler, serverOptions, (port) =>
      Effect.forEach(
        [0, ...SIZES],
        (size) => echo({ host: "127.0.0.1", port, message: bodyOf(size) }).pipe(Effect.exit),
        { concurrency: "unbounded" }
      ).pipe(Effect.map((exits) => expect(exits.map(Exit.isSuccess)).toEqual([true, true, true, true, true, true])))))

  it.live("send lorem.txt as the seed's log shows it: ten 64-byte pieces and one of 61, each way", () =>
    Effect.gen(function*() {
      const logs: Array<string> = []
      const capture = Logger.make((options) => void logs.push(String(options.message)))
      yield* serve(EchoHandler, serverOptions, (port) => echo({ host: "127.0.0.1", port, message: Buffer.from(LOREM) }))
        .pipe(Effect.provide(Logger.layer([capture])), Effect.provideService(References.MinimumLogLevel, "Debug"))
      const pieces = (who: string) =>
        logs.flatMap((line) => line.startsWith(`${who}: more() -> (`) ? [Number(/\((\d+) bytes\)/.exec(line)![1])] : [])
      const seed = [64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 61]
      expect(pieces("EchoProducer")).toEqual(seed)
      expect(pieces("EchoHandler")).toEqual(seed)
      expect(logs).toContain(`EchoHandler: _process_command() "ECHO 701"`)
      expect(logs).toContain("EchoClient: received a copy of the message (701 bytes)")
    }))

  it.live("the server finds a command split anywhere, echoes exactly the count, and ignores what follows", () =>
    serve(EchoHandler, serverOptions, (port) =>
      Effect.gen(function*() {
        const peer = yield* connect(port)
        peer.socket.setNoDelay(true)
        for (const piece of ["EC", "HO 1", "0\n01234", "5\n789EXTRA\n"]) {
          yield* peer.write(piece)
          yield* Effect.sleep("15 millis")
        }
        // the server closes when done, whatever else the client sends
        yield* peer.received.endOf()
        expect(peer.received.text).toBe("012345\n789")
      })))

  it.live("a bad command, or a body over the limit, closes the connection with no answer, logged why", () =>
    Effect.gen(function*() {
      const logs: Array<string> = []
      const capture = Logger.make((options) => void logs.push(String(options.message)))
      const answers = yield* serve(
        EchoHandler,
        serverOptions,
        (port) =>
          Effect.forEach(
            ["HELLO 5\nhello", "ECHO five\n", `ECHO ${MAX_BODY + 1}\n`],
            (request) =>
              Effect.gen(function*() {
                const peer = yield* connect(port, JSON.stringify(request))
                yield* peer.write(request)
                yield* peer.received.endOf()
                return peer.received.text
              })
          )
      ).pipe(Effect.provide(Logger.layer([capture])))
      expect(answers).toEqual(["", "", ""])
      // typed errors where the seed's handler raised into handle_error
      expect(logs.filter((line) => line.startsWith("connection closed by"))).toEqual([
        "connection closed by HandlerFailed",
        "connection closed by HandlerFailed",
        `connection closed by FrameTooLong: Frame too long: a length of ${
          MAX_BODY + 1
        } exceeds the limit of ${MAX_BODY} bytes (terminator length ${MAX_BODY + 1})`
      ])
    }))

  it.live("the client fails on a copy that differs, a short one, or one followed by more bytes", () =>
    Effect.gen(function*() {
      expect(yield* verdict((body) => body.replace("o w", "o_w"))).toBe("the copy differs from the message at byte 5")
      expect(yield* verdict((body) => body.slice(0, 8))).toBe("the server closed after 8 of 11 bytes")
      expect(yield* verdict(() => "")).toBe("the server closed after 0 of 11 bytes")
      expect(yield* verdict((body) => `${body}!!`)).toBe("2 more bytes after the copy")
    }))

  it.effect("the client's machine: exactly the count, however it is cut, then nothing", () =>
    Effect.gen(function*() {
      expect(yield* decodeReply(5, "he", "l", "lo")).toEqual(["hello"])
      expect(yield* decodeReply(0)).toEqual([""])
      expect(yield* Effect.flip(decodeReply(5, "hel"))).toBe("the server closed after 3 of 5 bytes")
      expect(yield* Effect.flip(decodeReply(5, "hello", "x"))).toBe("1 more bytes after the copy")
    }))
})

describe("echo-chat against CPython 3.11's asynchat (the seed's own programs)", () => {
  pyIt(
    `our client against the seed's Python EchoServer, bodies of 1 to 10,000 bytes${python.skipReason}`,
    () =>
      Effect.forEach(SIZES, (size) =>
        Effect.gen(function*() {
          python.require()
          const server = yield* pythonServer
          const outcome = yield* echo({ host: "127.0.0.1", port: server.port, message: bodyOf(size) }).pipe(Effect.exit)
          // the seed's server takes one client, then its loop runs dry and it exits
          const exit = yield* server.child.exit()
          expect(Exit.isSuccess(outcome), `${size} bytes: ${server.child.stderr.text.slice(-1000)}`).toBe(true)
          expect(exit).toMatchObject({ code: 0, signal: null })
          expect(exit.stderr).toContain(`EchoHandler: _process_command() "b'ECHO ${size}'"`)
        }), { concurrency: "unbounded", discard: true })
  )

  pyIt(
    `the seed's Python EchoClient against our server, bodies of 1 to 10,000 bytes${python.skipReason}`,
    () =>
      serve(EchoHandler, serverOptions, (port) =>
        Effect.forEach(SIZES, (size) =>
          Effect.gen(function*() {
            python.require()
            const client = yield* pythonClient(port, bodyOf(size))
            expect({ code: client.code, size }, client.stderr.slice(-1500)).toEqual({ code: 0, size })
            expect(client.stderr).toContain("EchoClient: RECEIVED COPY OF MESSAGE")
          }), { concurrency: "unbounded", discard: true }))
  )

  pyIt(
    `the Python EchoClient's verdict can fail: 1 for a wrong copy, 2 for none${python.skipReason}`,
    () =>
      Effect.gen(function*() {
        python.require()
        const wrong = yield* serve(
          Liar((body) => body.toUpperCase()),
          {},
          (port) => pythonClient(port, Buffer.from(LOREM))
        )
        expect(wrong.code).toBe(1)
        expect(wrong.stderr).toContain("EchoClient: ERROR IN TRANSMISSION")
        const none = yield* serve(Liar((body) => body.slice(1)), {}, (port) => pythonClient(port, Buffer.from(LOREM)))
        expect(none.code).toBe(2)
      })
  )

  pyIt(
    `ECHO 0: our server answers nothing and closes; asynchat reads a count of 0 as None and waits${python.skipReason}`,
    () =>
      Effect.gen(function*() {
        python.require()
        const ours = yield* serve(EchoHandler, serverOptions, (port) =>
          Effect.gen(function*() {
            const peer = yield* connect(port)
            yield* peer.write("ECHO 0\n")
            yield* peer.received.endOf()
            return peer.received.text
          }))
        expect(ours).toBe("")
        const server = yield* pythonServer
        const peer = yield* connect(server.port)
        yield* peer.write("ECHO 0\nabc")
        yield* Effect.sleep("300 millis")
        expect({ text: peer.received.text, ended: peer.received.ended }).toEqual({ text: "", ended: false })
        // only our hanging up ends it
        yield* peer.end()
        expect(yield* server.child.exit()).toMatchObject({ code: 0, signal: null })
        expect(server.child.stderr.text).toContain(`collect_incoming_data() -> (3 bytes)\n"""b'abc'"""`)
      })
  )
})

describe("echo-chat from the command line", () => {
  it.live("npm start -- echo-chat runs server and client in one process, as the seed does", () =>
    Effect.gen(function*() {
      const child = yield* cli("echo-chat")
      expect(yield* child.exit("10 seconds")).toMatchObject({ code: 0, signal: null })
      expect(child.stdout.lines).toEqual([
        expect.stringMatching(/^EchoClient: sending 701 bytes to 127\.0\.0\.1:\d+$/),
        "EchoClient: received a copy of the message (701 bytes)"
      ])
    }))

  pyIt(
    `--role client against the Python EchoServer, --role server for the Python EchoClient${python.skipReason}`,
    () =>
      Effect.all([
        Effect.gen(function*() {
          python.require()
          const server = yield* pythonServer
          const child = yield* cli("echo-chat", "--role", "client", "--port", String(server.port), "--size", "10000")
          expect(yield* child.exit("10 seconds")).toMatchObject({ code: 0, signal: null })
          expect(child.stdout.lines.at(-1)).toBe("EchoClient: received a copy of the message (10000 bytes)")
          expect(yield* server.child.exit()).toMatchObject({ code: 0, signal: null })
        }),
        Effect.gen(function*() {
          python.require()
          const child = yield* cli("echo-chat", "--role", "server", "--port", "0")
          const port = yield* listeningPort(child)
          const client = yield* pythonClient(port, bodyOf(10_000))
          expect(client.code, client.stderr.slice(-1500)).toBe(0)
          child.process.kill("SIGINT")
          expect(yield* child.exit()).toMatchObject({ code: 0, signal: null })
        })
      ], { concurrency: "unbounded" })
  )

  it.live("--role client exits 1 when the copy differs, saying where", () =>
    serve(Liar((body) => body.replace("w", "W")), {}, (port) =>
      Effect.gen(function*() {
        const child = yield* cli("echo-chat", "--role", "client", "--port", String(port), "--message", "hello world")
        expect(yield* child.exit("10 seconds")).toMatchObject({ code: 1, signal: null })
        expect(child.stdout.text + child.stderr.text).toContain("the copy differs from the message at byte 6")
      })))
})
