/**
 * The server examples over TLS, as an operator runs them (`npm start -- <example> --tls-key F --tls-cert F`),
 * with real clients: curl and wrk for http11, redis-cli for redis. Certificates are made at test time.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { curl, tool, wrk } from "../tools.ts"
import { certificates, openssl } from "../transport-helpers.ts"
import { runProcess } from "./http-helpers.ts"
import { cli, listeningPort } from "./peers.ts"

const redisCli = tool("redis-cli")

/** The example `name` started with the test certificates, and its port. */
const serveWithTls = (name: string) =>
  Effect.gen(function*() {
    const pems = certificates()
    const child = yield* cli(
      name,
      "--port",
      "0",
      "--tls-key",
      `${pems.dir}/server.key`,
      "--tls-cert",
      `${pems.dir}/server.crt`
    )
    const port = yield* listeningPort(child)
    expect(child.stdout.text).toContain(" with TLS")
    return { port, ca: `${pems.dir}/ca.crt` }
  })

describe("the examples over TLS", () => {
  ;(curl.available && openssl.available ? it.live : it.live.skip)(
    `http11 answers curl over https, two requests on one connection${curl.skipReason}${openssl.skipReason}`,
    () =>
      Effect.gen(function*() {
        curl.require()
        const { ca, port } = yield* serveWithTls("http11")
        const url = `https://127.0.0.1:${port}/`
        const result = yield* runProcess("curl", ["-sS", "--max-time", "5", "--cacert", ca, "-v", url, url])
        expect(result.code).toBe(0)
        expect(result.stdout.toString()).toBe("hello worldhello world")
        expect(result.stderr).toMatch(/SSL connection using TLS/)
        expect(result.stderr).toMatch(/Re-using existing connection|Reusing existing/)
      }),
    20_000
  )
  ;(wrk.available && openssl.available ? it.live : it.live.skip)(
    `http11 under wrk over https: many requests, no socket errors, every answer 200${wrk.skipReason}`,
    () =>
      Effect.gen(function*() {
        wrk.require()
        const { port } = yield* serveWithTls("http11")
        const result = yield* runProcess("wrk", ["-t1", "-c10", "-d1s", `https://127.0.0.1:${port}/`], {
          timeout: "15 seconds"
        })
        const report = result.stdout.toString()
        expect(result.code, report + result.stderr).toBe(0)
        expect(Number(/(\d+) requests in /.exec(report)?.[1])).toBeGreaterThan(100)
        // wrk prints these lines only when something went wrong
        expect(report).not.toMatch(/Socket errors|Non-2xx or 3xx responses/)
      }),
    20_000
  )
  ;(redisCli.available && openssl.available ? it.live : it.live.skip)(
    `redis answers redis-cli --tls${redisCli.skipReason}${openssl.skipReason}`,
    () =>
      Effect.gen(function*() {
        redisCli.require()
        const { ca, port } = yield* serveWithTls("redis")
        const redis = (...args: ReadonlyArray<string>) =>
          Effect.map(
            runProcess("redis-cli", ["--tls", "--cacert", ca, "-h", "127.0.0.1", "-p", String(port), ...args]),
            (r) => r.stdout.toString().trimEnd()
          )
        expect(yield* redis("PING")).toBe("PONG")
        expect(yield* redis("SET", "greeting", "over tls")).toBe("OK")
        expect(yield* redis("GET", "greeting")).toBe("over tls")
      }),
    20_000
  )

  it.live("one TLS file without the other is refused, saying so", () =>
    Effect.gen(function*() {
      const pems = certificates()
      const result = yield* runProcess(process.execPath, [
        "--conditions=@effect-asynchat/source",
        "examples/cli.ts",
        "redis",
        "--port",
        "0",
        "--tls-key",
        `${pems.dir}/server.key`
      ])
      expect(result.code).not.toBe(0)
      expect(result.stderr + result.stdout.toString()).toContain("--tls-key and --tls-cert go together")
    }), 20_000)
})
