/**
 * Telemetry export end to end: a server on 127.0.0.1 with the Prometheus endpoint, scraped by curl and its body
 * parsed as the Prometheus text format; and the OTLP layer exporting to an OTLP/HTTP receiver of our own
 * (`node:http` on 127.0.0.1, a free port), whose JSON payloads must hold the connection spans, the counters and
 * the connection logs in their spans' traces.
 */
import { assert, describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer, Metric, References } from "effect"
import { Buffer } from "node:buffer"
import * as Http from "node:http"
import { Chat, Protocol, Telemetry, Terminator } from "../src/index.ts"
import { runCurl } from "./examples/http-helpers.ts"
import { connect, serve, settleCount } from "./examples/peers.ts"
import { attributes, json, parsePrometheus, receiver, valueOf } from "./telemetry-helpers.ts"
import { curl } from "./tools.ts"

const curlTest = curl.available ? it.live : it.live.skip

const Echo = Protocol.forEach(Terminator.lf, (line) => Chat.push(line.bytes, "\n"))

/** A fresh metric registry: the counts of this test only. */
const ownMetrics = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.provideService(self, Metric.MetricRegistry, new Map())

describe("Telemetry.layerPrometheus", () => {
  curlTest(
    `a scrape by curl is the Prometheus text format with the connection counters${curl.skipReason}`,
    () =>
      ownMetrics(
        serve(Echo, { maxConnections: 2, maxFrameLength: 8 }, (port, server) =>
          Effect.gen(function*() {
            curl.require()
            const endpoint = Context.get(
              yield* Layer.build(Telemetry.layerPrometheus({ port: 0 })),
              Telemetry.MetricsEndpoint
            )
            expect(endpoint.url).toBe(`http://127.0.0.1:${endpoint.port}/metrics`)
            // two served, one of which sends a line over maxFrameLength; a third refused while both are open
            const a = yield* connect(port, "a")
            const b = yield* connect(port, "b")
            yield* a.write("ping\n")
            yield* a.received.contains("ping\n")
            yield* b.write("pong\n")
            yield* b.received.contains("pong\n")
            expect(yield* settleCount(server, 2)).toBe(2)
            const c = yield* connect(port, "c")
            yield* c.received.endOf("3 seconds")
            yield* b.write("far too long\n")
            yield* b.received.endOf("3 seconds")
            expect(yield* settleCount(server, 1)).toBe(1)
            yield* Effect.sleep("20 millis") // the traffic counters reach the metrics at the end of a turn

            const scrape = yield* runCurl("-i", endpoint.url)
            expect(scrape.code, scrape.stderr).toBe(0)
            const [head, body] = scrape.stdout.toString("utf8").split("\r\n\r\n")
            expect(head).toMatch(/^HTTP\/1\.1 200/)
            expect(head.toLowerCase()).toContain("content-type: text/plain; version=0.0.4; charset=utf-8")
            const page = parsePrometheus(body)

            const family = (name: string) => page.get(`effect_asynchat_${name}`)
            expect(family("connections_open")).toMatchObject({ help: "Connections open right now", type: "gauge" })
            expect(family("connections_total")).toMatchObject({
              help: "Connections accepted or opened",
              type: "counter"
            })
            expect(family("connections_rejected")).toMatchObject({ type: "counter" })
            expect(family("bytes_in")).toMatchObject({ help: "Bytes received", type: "counter" })
            expect(family("errors")).toMatchObject({
              help: "Connections ended by an error, by reason",
              type: "counter"
            })
            expect(valueOf(page, "effect_asynchat_connections_open")).toBe(1)
            expect(valueOf(page, "effect_asynchat_connections_total")).toBe(2)
            expect(valueOf(page, "effect_asynchat_connections_rejected")).toBe(1)
            expect(valueOf(page, "effect_asynchat_errors", { reason: "FrameTooLong" })).toBe(1)
            expect(valueOf(page, "effect_asynchat_frames_in")).toBe(2)
            expect(valueOf(page, "effect_asynchat_bytes_in")).toBe("ping\npong\nfar too long\n".length)
            expect(valueOf(page, "effect_asynchat_bytes_out")).toBe("ping\npong\n".length)

            // HEAD has the headers and no body; any other path is a 404
            const head2 = yield* runCurl("-I", endpoint.url)
            expect(head2.stdout.toString()).toMatch(/^HTTP\/1\.1 200/)
            const other = yield* runCurl(
              "-s",
              "-o",
              "/dev/null",
              "-w",
              "%{http_code}",
              endpoint.url.replace("/metrics", "/")
            )
            expect(other.stdout.toString()).toBe("404")
          }).pipe(Effect.scoped))
      )
  )

  it.live("a port already taken fails with a MetricsEndpointError; closing the scope closes the endpoint", () =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const first = yield* Layer.buildWithScope(Telemetry.layerPrometheus({ port: 0 }), scope)
      const endpoint = Context.get(first, Telemetry.MetricsEndpoint)
      const error = yield* Effect.flip(Effect.scoped(Layer.build(Telemetry.layerPrometheus({ port: endpoint.port }))))
      expect(error._tag).toBe("MetricsEndpointError")
      expect(error.message).toContain("EADDRINUSE")
      // a layer in a scope of its own, closed: nothing listens there any more
      const closed = yield* Effect.scoped(
        Effect.map(
          Layer.build(Telemetry.layerPrometheus({ port: 0 })),
          (context) => Context.get(context, Telemetry.MetricsEndpoint).port
        )
      )
      const refused = yield* Effect.callback<string>((resume) => {
        const request = Http.get(`http://127.0.0.1:${closed}/metrics`, () => resume(Effect.succeed("answered")))
        request.once("error", (e: NodeJS.ErrnoException) => resume(Effect.succeed(e.code ?? e.message)))
      })
      expect(refused).toBe("ECONNREFUSED")
    }).pipe(Effect.scoped))
})

describe("Telemetry.layerOtlp", () => {
  it.live("a receiver gets the connection spans, the counters and the connections' logs in their traces (JSON)", () =>
    Effect.gen(function*() {
      const otlp = yield* receiver
      const peers: Array<number> = []
      yield* ownMetrics(
        serve(Echo, {}, (port, server) =>
          Effect.gen(function*() {
            for (const name of ["one", "two"]) {
              const peer = yield* connect(port, name)
              peers.push(peer.socket.localPort!)
              yield* peer.write(`${name}\n`)
              yield* peer.received.contains(`${name}\n`)
              yield* peer.end()
              yield* peer.received.endOf()
            }
            expect(yield* settleCount(server, 0)).toBe(0)
          }).pipe(Effect.scoped)).pipe(
            // closing the layer (after the server) sends what is buffered: no waiting for an interval
            Effect.provide(
              Telemetry.layerOtlp({ url: otlp.url, serviceName: "telemetry-test", serviceVersion: "1.2.3" })
            ),
            Effect.provideService(References.MinimumLogLevel, "Debug")
          )
      )

      const traces = json(otlp.posts, "/v1/traces")
      expect(traces.length).toBeGreaterThan(0)
      const resource = attributes(traces[0].resourceSpans[0].resource.attributes)
      expect(resource).toMatchObject({ "service.name": "telemetry-test", "service.version": "1.2.3" })
      const spans = traces.flatMap((t) =>
        t.resourceSpans.flatMap((r: any) => r.scopeSpans.flatMap((s: any) => s.spans))
      ) as Array<any>
      const connections = spans.filter((s) => s.name === "effect-asynchat.connection")
      expect(connections).toHaveLength(2)
      expect(connections.map((s) => attributes(s.attributes))).toEqual([
        { "connection.id": 1, "net.peer": `127.0.0.1:${peers[0]}`, "connection.role": "server" },
        { "connection.id": 2, "net.peer": `127.0.0.1:${peers[1]}`, "connection.role": "server" }
      ])
      for (const span of connections) {
        expect(span.kind).toBe(2) // SPAN_KIND_SERVER
        expect(span.traceId).toMatch(/^[0-9a-f]{32}$/)
        expect(BigInt(span.endTimeUnixNano)).toBeGreaterThan(BigInt(span.startTimeUnixNano))
      }
      expect(new Set(connections.map((s) => s.traceId)).size).toBe(2)

      // cumulative: the last export holds the totals
      const metrics = json(otlp.posts, "/v1/metrics")
      expect(metrics.length).toBeGreaterThan(0)
      const last = metrics.at(-1).resourceMetrics[0].scopeMetrics[0].metrics as Array<any>
      const metric = (name: string) => last.find((m) => m.name === `effect_asynchat_${name}`)
      expect(metric("connections_total").sum).toMatchObject({ isMonotonic: true, dataPoints: [{ asDouble: 2 }] })
      expect(metric("connections_open").sum).toMatchObject({ isMonotonic: false, dataPoints: [{ asDouble: 0 }] })
      expect(metric("bytes_in").sum.dataPoints[0].asDouble).toBe("one\ntwo\n".length)
      expect(metric("frames_in").sum.dataPoints[0].asDouble).toBe(2)

      // each connection's logs carry its id and peer, in its span's trace
      const records = json(otlp.posts, "/v1/logs").flatMap((l) =>
        l.resourceLogs.flatMap((r: any) => r.scopeLogs.flatMap((s: any) => s.logRecords))
      ) as Array<any>
      for (const [i, span] of connections.entries()) {
        const opened = records.find((r) => r.body.stringValue === "connection opened" && r.spanId === span.spanId)
        assert(opened !== undefined, `connection ${i + 1}'s "connection opened" log`)
        expect(opened.traceId).toBe(span.traceId)
        expect(attributes(opened.attributes)).toMatchObject({ connection: i + 1, peer: `127.0.0.1:${peers[i]}` })
      }
    }).pipe(Effect.scoped))

  it.live("a collector that cannot be reached leaves the server serving, and the shutdown waits only shutdownTimeout", () =>
    Effect.gen(function*() {
      // a port that was free a moment ago: nothing listens there
      const closed = yield* Effect.scoped(Effect.map(receiver, (r) => r.url))
      const start = Date.now()
      yield* ownMetrics(
        serve(Echo, {}, (port) =>
          Effect.gen(function*() {
            const peer = yield* connect(port)
            yield* peer.write("still here\n")
            yield* peer.received.contains("still here\n")
          }).pipe(Effect.scoped)).pipe(
            Effect.provide(
              Telemetry.layerOtlp({ url: closed, serviceName: "nowhere", shutdownTimeout: "300 millis" })
            )
          )
      )
      expect(Date.now() - start).toBeLessThan(3000)
    }))

  it.live("serialization: \"protobuf\" posts application/x-protobuf", () =>
    Effect.gen(function*() {
      const otlp = yield* receiver
      yield* ownMetrics(
        serve(Echo, {}, (port) =>
          Effect.gen(function*() {
            const peer = yield* connect(port)
            yield* peer.write("x\n")
            yield* peer.received.contains("x\n")
          }).pipe(Effect.scoped)).pipe(
            Effect.provide(Telemetry.layerOtlp({ url: otlp.url, serviceName: "proto-test", serialization: "protobuf" }))
          )
      )
      const traces = otlp.posts.filter((p) => p.path === "/v1/traces")
      expect(traces.length).toBeGreaterThan(0)
      for (const post of otlp.posts) expect(post.contentType).toBe("application/x-protobuf")
      // the span's name and the service's, as protobuf strings (their bytes, length-prefixed)
      const body = Buffer.concat(traces.map((p) => p.body))
      expect(body.includes(Buffer.from("\x1aeffect-asynchat.connection", "latin1"))).toBe(true)
      expect(body.includes(Buffer.from("proto-test"))).toBe(true)
    }).pipe(Effect.scoped))
})
