/**
 * The operator's limits every server example takes (`examples/shared.ts`): each flag is in every server's
 * `--help` with that example's default (and `--workers` in those that take it), a bad value is refused with the flag's name, and each one, set on the
 * command line, changes what the running server does.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import { Buffer } from "node:buffer"
import * as Chatroom from "../../examples/chatroom.ts"
import * as EchoChat from "../../examples/echo-chat.ts"
import * as Hello from "../../examples/hello.ts"
import * as HttpServer from "../../examples/http-server.ts"
import * as Http11 from "../../examples/http11.ts"
import * as Redis from "../../examples/redis.ts"
import type { ChatServer } from "../../src/index.ts"
import { cli, connect, listeningPort } from "./peers.ts"

/** The help text's spelling of a default: `Duration.format`, "off" for none. */
const shown = (input: Duration.Input | undefined, fallback: string) => {
  if (input === undefined) return fallback
  const d = Duration.fromInputUnsafe(input)
  return Duration.isFinite(d) ? Duration.format(d) : "off"
}

const servers: ReadonlyArray<readonly [string, ChatServer.Options]> = [
  ["chatroom", Chatroom.serverOptions],
  ["echo", {}],
  ["echo-chat", EchoChat.serverOptions],
  ["hello", Hello.serverOptions],
  ["http-server", HttpServer.serverOptions],
  ["http11", Http11.serverOptions],
  ["redis", Redis.serverOptions]
]

/** The server examples that take `--workers n`. */
const withWorkers = ["chatroom", "http11"]

describe("the server examples' limits", () => {
  it.live(
    "every server example's --help shows each limit with that example's default",
    () =>
      Effect.forEach(servers, ([name, options]) =>
        Effect.scoped(Effect.gen(function*() {
          const child = yield* cli(name, "--help")
          expect(yield* child.exit("14 seconds"), name).toMatchObject({ code: 0 })
          const help = child.stdout.text.replace(/\s+/g, " ")
          const expected = [
            `--idle-timeout duration Close a connection that sends nothing for this long (default ${
              shown(options.idleTimeout, "5m")
            };`,
            `--frame-timeout duration Close a connection whose frame is incomplete this long after its first byte (default ${
              shown(options.frameTimeout, "30s")
            };`,
            `--write-timeout duration Close a connection that reads none of its output for this long (default ${
              shown(options.writeTimeout, "1m")
            };`,
            `--shutdown-timeout duration On Ctrl-C, wait this long for open connections before cutting them off (default ${
              shown(options.shutdownTimeout, "5s")
            };`,
            `--max-connections n Connections served at once; one more is refused (default ${
              options.maxConnections ?? 10000
            })`,
            `--max-frame-length n The longest frame in bytes (a line, a header block, a value); longer closes the connection (default ${
              options.maxFrameLength ?? 65536
            })`
          ]
          for (const line of expected) expect(help, `${name} --help`).toContain(line)
          // the examples that run on every core
          const workers =
            "--workers n Serve as n worker processes sharing the port (one per core: nproc), under a supervisor"
          if (withWorkers.includes(name)) expect(help, `${name} --help`).toContain(workers)
          else expect(help, `${name} --help`).not.toContain("--workers")
          // two at a time: five Node processes starting at once on a loaded two-core machine took over 10 s
        })), { concurrency: 2, discard: true }),
    60_000
  )

  it.live("a value that is not a duration or a positive count is refused, naming the flag", () =>
    Effect.scoped(Effect.gen(function*() {
      const badDuration = yield* cli("echo", "--port", "0", "--idle-timeout", "soon")
      const badCount = yield* cli("echo", "--port", "0", "--max-connections", "0")
      const badWorkers = yield* cli("http11", "--port", "0", "--workers", "0")
      const [duration, count, workers] = yield* Effect.all(
        [badDuration.exit("10 seconds"), badCount.exit("10 seconds"), badWorkers.exit("10 seconds")],
        { concurrency: 3 }
      )
      expect(duration.code).not.toBe(0)
      expect(badDuration.stdout.text + duration.stderr).toContain(
        `--idle-timeout: expected a duration such as "30 seconds", "250 millis" or "off", got "soon"`
      )
      expect(count.code).not.toBe(0)
      expect(badCount.stdout.text + count.stderr).toContain("--max-connections must be a positive whole number, got 0")
      expect(workers.code).not.toBe(0)
      expect(badWorkers.stdout.text + workers.stderr).toContain("--workers must be a positive whole number, got 0")
    })))

  it.live("--max-connections and --idle-timeout: one client more is refused; an idle one is let go", () =>
    Effect.scoped(Effect.gen(function*() {
      const child = yield* cli("echo", "--port", "0", "--max-connections", "1", "--idle-timeout", "400 millis")
      const port = yield* listeningPort(child)
      const first = yield* connect(port, "first")
      yield* first.write("ping")
      yield* first.received.contains("ping")
      const second = yield* connect(port, "second")
      yield* second.received.endOf("2 seconds")
      expect(second.received.text).toBe("")
      // the first one sends nothing more: it is closed after the idle timeout, not before
      const start = Date.now()
      yield* first.received.endOf("3 seconds")
      expect(Date.now() - start).toBeGreaterThanOrEqual(300)
      child.process.kill("SIGINT")
      expect(yield* child.exit()).toMatchObject({ code: 0 })
    })))

  it.live("--max-frame-length and --frame-timeout: a long line and a line left unfinished close their clients", () =>
    Effect.scoped(Effect.gen(function*() {
      const child = yield* cli("chatroom", "--port", "0", "--max-frame-length", "16", "--frame-timeout", "300 millis")
      const port = yield* listeningPort(child)
      const long = yield* connect(port, "long line")
      const slow = yield* connect(port, "unfinished line")
      const fine = yield* connect(port, "short lines")
      yield* fine.write("/nick fine\n")
      yield* long.write(`${"x".repeat(17)}\n`)
      yield* slow.write("half a li")
      yield* long.received.endOf("2 seconds")
      yield* slow.received.endOf("3 seconds")
      // the short lines' client is still served
      yield* fine.write("/who\n")
      yield* fine.received.contains("fine")
      expect(fine.received.ended).toBe(false)
      child.process.kill("SIGINT")
      expect(yield* child.exit()).toMatchObject({ code: 0 })
    })))

  it.live("--write-timeout lets go of a client that stops reading", () =>
    Effect.scoped(Effect.gen(function*() {
      const child = yield* cli("echo", "--port", "0", "--write-timeout", "300 millis", "--log-level", "debug")
      const port = yield* listeningPort(child)
      const peer = yield* connect(port, "non-reader")
      peer.socket.pause()
      // far more than the socket buffers on both sides hold: the echo's output waits on us until the server lets
      // go (with the default 1 minute, not within this test), which its log says
      for (let i = 0; i < 32; i++) yield* peer.write(Buffer.alloc(256 * 1024, 0x61))
      const log = () => child.stdout.text + child.stderr.text
      for (let i = 0; i < 100 && !log().includes("WriteTimeout"); i++) yield* Effect.sleep("50 millis")
      expect(log()).toMatch(/connection closed by WriteTimeout: Output not taken for 300ms/)
      child.process.kill("SIGINT")
      expect(yield* child.exit()).toMatchObject({ code: 0 })
    })))

  it.live("--shutdown-timeout bounds how long Ctrl-C waits for a busy client", () =>
    Effect.scoped(Effect.gen(function*() {
      const child = yield* cli("echo", "--port", "0", "--shutdown-timeout", "300 millis")
      const port = yield* listeningPort(child)
      // a client that sends far more than the socket buffers hold and reads none of it back: its echo waits
      // on it mid-answer, so the shutdown waits for it until the timeout, then interrupts it
      const peer = yield* connect(port, "non-reader")
      peer.socket.pause()
      for (let i = 0; i < 32; i++) yield* peer.write(Buffer.alloc(256 * 1024, 0x61))
      yield* Effect.sleep("200 millis")
      const start = Date.now()
      child.process.kill("SIGINT")
      expect(yield* child.exit("3 seconds")).toMatchObject({ code: 0 })
      const waited = Date.now() - start
      expect(waited).toBeGreaterThanOrEqual(300)
      expect(waited).toBeLessThan(2000) // not the default 5 seconds
    })))
})
