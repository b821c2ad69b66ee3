/**
 * The operator's limits and telemetry flags every server example takes (`examples/shared.ts`): each flag is in
 * every server's `--help` with that example's default (and `--workers` in those that take it), a bad value is
 * refused with the flag's name, and each one, set on the command line, changes what the running server does.
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
import { attributes, json, parsePrometheus, receiver, valueOf } from "../telemetry-helpers.ts"
import { curl } from "../tools.ts"
import { runCurl } from "./http-helpers.ts"
import { cli, connect, listeningPort } from "./peers.ts"

const curlTest = curl.available ? it.live : it.live.skip

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

/** The telemetry flags' help, the same in every server example. */
const telemetryHelp = [
  "--otlp url Send traces (a span per connection), metrics and logs over OTLP/HTTP (JSON) to this collector, " +
  "e.g. http://127.0.0.1:4318 (default none: no tracer, no span)",
  "--metrics-port n Serve the metrics in the Prometheus text format on http://127.0.0.1:<n>/metrics " +
  "(default none; 0 picks a free port; with --workers, worker i serves on n + i)"
]

/** The PROXY protocol flags' help, the same in every server example. */
const proxyHelp = [
  "--proxy-protocol Expect a PROXY protocol header (v1 or v2, HAProxy's send-proxy / send-proxy-v2) before each " +
  "connection's first byte, from 127.0.0.1 or a --trusted-proxy only",
  "--trusted-proxy addrs With --proxy-protocol: more proxies to trust, addresses or CIDR blocks, comma-separated"
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
          for (const line of [...expected, ...telemetryHelp, ...proxyHelp]) {
            expect(help, `${name} --help`).toContain(line)
          }
          // the examples that run on every core
          const workers =
            "--workers n Serve as n worker processes sharing the port (one per core: nproc), under a supervisor"
          if (withWorkers.includes(name)) expect(help, `${name} --help`).toContain(workers)
          else expect(help, `${name} --help`).not.toContain("--workers n")
          // two at a time: five Node processes starting at once on a loaded two-core machine took over 10 s
        })), { concurrency: 2, discard: true }),
    60_000
  )

  it.live(
    "smtp's --help and the root command's (which runs hello) show the telemetry flags too",
    () =>
      Effect.forEach([["smtp", "--help"], ["--help"]], (args) =>
        Effect.scoped(Effect.gen(function*() {
          const child = yield* cli(...args)
          expect(yield* child.exit("14 seconds"), args.join(" ")).toMatchObject({ code: 0 })
          const help = child.stdout.text.replace(/\s+/g, " ")
          for (const line of telemetryHelp) expect(help, args.join(" ")).toContain(line)
        })), { concurrency: 2, discard: true }),
    30_000
  )

  curlTest(
    `--metrics-port and --otlp: curl scrapes the counters; the collector gets the spans, named for the example${curl.skipReason}`,
    () =>
      Effect.scoped(Effect.gen(function*() {
        curl.require()
        const otlp = yield* receiver
        const child = yield* cli("echo", "--port", "0", "--metrics-port", "0", "--otlp", otlp.url)
        const port = yield* listeningPort(child)
        yield* child.stdout.until(
          "the metrics line",
          (r) => /metrics on http:\/\/127\.0\.0\.1:\d+\/metrics/.test(r.text)
        )
        const url = /metrics on (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(child.stdout.text)![1]
        const peers: Array<number> = []
        for (const name of ["one", "two", "three"]) {
          const peer = yield* connect(port, name)
          peers.push(peer.socket.localPort!)
          yield* peer.write(name)
          yield* peer.received.contains(name)
          if (name !== "three") {
            yield* peer.end()
            yield* peer.received.endOf()
          }
        }
        // the two closed are no longer open by the time the scrape is answered: poll a few times for it
        let page = parsePrometheus((yield* runCurl(url)).stdout.toString("utf8"))
        for (let i = 0; i < 50 && valueOf(page, "effect_asynchat_connections_open") !== 1; i++) {
          yield* Effect.sleep("20 millis")
          page = parsePrometheus((yield* runCurl(url)).stdout.toString("utf8"))
        }
        expect(page.get("effect_asynchat_connections_open")?.type).toBe("gauge")
        expect(page.get("effect_asynchat_connections_total")?.type).toBe("counter")
        expect(valueOf(page, "effect_asynchat_connections_open")).toBe(1)
        expect(valueOf(page, "effect_asynchat_connections_total")).toBe(3)
        expect(valueOf(page, "effect_asynchat_bytes_in")).toBe("onetwothree".length)
        expect(valueOf(page, "effect_asynchat_bytes_out")).toBe("onetwothree".length)
        // Ctrl-C: the server shuts down, then the exporters send what they hold, then it exits
        child.process.kill("SIGINT")
        expect(yield* child.exit("10 seconds")).toMatchObject({ code: 0 })
        const traces = json(otlp.posts, "/v1/traces")
        expect(attributes(traces[0].resourceSpans[0].resource.attributes)["service.name"]).toBe("effect-asynchat-echo")
        const spans = traces.flatMap((t) =>
          t.resourceSpans.flatMap((r: any) => r.scopeSpans.flatMap((s: any) => s.spans))
        ) as Array<any>
        const connections = spans.filter((s) => s.name === "effect-asynchat.connection")
          .map((s) => attributes(s.attributes))
          .toSorted((a, b) => Number(a["connection.id"]) - Number(b["connection.id"]))
        expect(connections).toEqual(peers.map((peer, i) => ({
          "connection.id": i + 1,
          "net.peer": `127.0.0.1:${peer}`,
          "connection.role": "server"
        })))
        const metrics = json(otlp.posts, "/v1/metrics").at(-1).resourceMetrics[0].scopeMetrics[0].metrics as Array<any>
        const total = metrics.find((m) => m.name === "effect_asynchat_connections_total")
        expect(total.sum.dataPoints[0].asDouble).toBe(3)
      })),
    30_000
  )

  it.live(
    "--proxy-protocol: a connection from 127.0.0.1 begins with a PROXY header, and one without is closed",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const child = yield* cli("echo", "--port", "0", "--proxy-protocol", "--trusted-proxy", "10.0.0.0/8")
        const port = yield* listeningPort(child)
        const proxied = yield* connect(port, "proxied")
        yield* proxied.write("PROXY TCP4 192.0.2.1 192.0.2.2 4000 80\r\nhello")
        yield* proxied.received.contains("hello")
        expect(proxied.received.text).toBe("hello") // the header was read, not echoed
        const bare = yield* connect(port, "bare")
        yield* bare.write("hello\r\n")
        yield* bare.received.endOf("6 seconds")
        expect(bare.received.text).toBe("")
        yield* child.stdout.until("the refusal's warning", (r) => r.text.includes("Invalid PROXY header"))
        // a bad --trusted-proxy entry stops the server before it listens, saying which
        const bad = yield* cli("echo", "--port", "0", "--proxy-protocol", "--trusted-proxy", "nowhere")
        const exit = yield* bad.exit("10 seconds")
        expect(exit.code).not.toBe(0)
        expect(bad.stdout.text + exit.stderr).toContain("nowhere")
      })),
    30_000
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
