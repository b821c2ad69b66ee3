/**
 * Telemetry export with Effect's own observability modules: `layerOtlp` sends traces (the per-connection spans),
 * metrics (`ChatMetrics` and any other) and logs to an OpenTelemetry collector over OTLP/HTTP; `layerPrometheus`
 * serves the metrics in the Prometheus text format on `/metrics` for a scrape. Both are layers an application adds
 * around its server; neither is needed: without `layerOtlp` no tracer is installed and connections make no span.
 *
 * @since 0.1.0
 */
import { Context, Data, Effect, Layer, Metric } from "effect"
import type { Duration } from "effect"
import * as FetchHttpClient from "effect/http/FetchHttpClient"
import { Otlp, OtlpSerialization, PrometheusMetrics } from "effect/observability"
import type { OtlpExporter } from "effect/observability"
import { Buffer } from "node:buffer"
import * as Http from "node:http"
import { ignore } from "./internal/transport.ts"

/**
 * Where and how `layerOtlp` exports.
 *
 * @example
 * ```ts
 * import type { Telemetry } from "effect-asynchat"
 *
 * const collector: Telemetry.OtlpOptions = {
 *   url: "http://127.0.0.1:4318",
 *   serviceName: "chat",
 *   serialization: "protobuf"
 * }
 * ```
 *
 * @category options
 * @since 0.1.0
 */
export interface OtlpOptions {
  /** The collector's base URL (`http://host:4318`): signals go to `/v1/traces`, `/v1/metrics` and `/v1/logs`. */
  readonly url: string
  /** The resource's `service.name`. */
  readonly serviceName: string
  /** The resource's `service.version`. */
  readonly serviceVersion?: string | undefined
  /** Extra resource attributes (`deployment.environment`, ...). */
  readonly attributes?: Record<string, unknown> | undefined
  /** `"json"` (the default: readable, accepted by the Collector, Jaeger, Tempo) or `"protobuf"`. */
  readonly serialization?: "json" | "protobuf" | undefined
  /** Headers sent with every export (an API key). */
  readonly headers?: Record<string, string> | undefined
  /**
   * How often each signal is sent (default Effect's: spans every 5 seconds, metrics every 10, logs every second).
   */
  readonly exportInterval?: Duration.Input | undefined
  /** How long closing the layer waits for the last export (default 3 seconds). */
  readonly shutdownTimeout?: Duration.Input | undefined
}

/**
 * OTLP/HTTP export of traces, metrics and logs, with `fetch` as the HTTP client. It installs a tracer, so every
 * connection runs in its `effect-asynchat.connection` span; it adds a logger beside the ones already installed
 * (the console's stays); it sends a snapshot of every metric on each interval (cumulative). Closing it (the end
 * of the program) sends what is still buffered, up to `shutdownTimeout`. A collector that cannot be reached
 * costs a debug log line and disables that signal's export for a minute: the application goes on.
 *
 * @example
 * ```ts
 * import { NodeRuntime } from "@effect/platform-node"
 * import { Layer } from "effect"
 * import { Chat, ChatServer, Listener, Protocol, Telemetry, Terminator } from "effect-asynchat"
 *
 * const Echo = Protocol.forEach(Terminator.lf, (line) => Chat.push(line.bytes, "\n"))
 * ChatServer.layer(Echo).pipe(
 *   Layer.provide(Listener.layerTcp({ host: "127.0.0.1", port: 7000 })),
 *   // outside the server: its spans end, and are sent, before the exporter closes
 *   Layer.provide(Telemetry.layerOtlp({ url: "http://127.0.0.1:4318", serviceName: "echo" })),
 *   Layer.launch,
 *   NodeRuntime.runMain
 * )
 * ```
 *
 * @category layers
 * @since 0.1.0
 */
export const layerOtlp = (options: OtlpOptions): Layer.Layer<OtlpExporter.Flusher> =>
  Otlp.layer({
    baseUrl: options.url,
    resource: {
      serviceName: options.serviceName,
      serviceVersion: options.serviceVersion,
      ...(options.attributes === undefined ? {} : { attributes: options.attributes })
    },
    headers: options.headers,
    loggerExportInterval: options.exportInterval,
    metricsExportInterval: options.exportInterval,
    tracerExportInterval: options.exportInterval,
    shutdownTimeout: options.shutdownTimeout
  }).pipe(
    Layer.provide(
      options.serialization === "protobuf" ? OtlpSerialization.layerProtobuf : OtlpSerialization.layerJson
    ),
    Layer.provide(FetchHttpClient.layer)
  )

/**
 * The metrics in the Prometheus text format (0.0.4), from the current context's registry: Effect's
 * `PrometheusMetrics.format`, except that a counter which goes down (`connectionsOpen`, made without
 * `incremental`) is typed `gauge`, as Prometheus takes a counter that decreases for a restart.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Telemetry } from "effect-asynchat"
 *
 * const page = Effect.map(Telemetry.prometheusText, (text) => text.split("\n").filter((l) => l.startsWith("# TYPE")))
 * ```
 *
 * @category formatting
 * @since 0.1.0
 */
export const prometheusText: Effect.Effect<string> = Effect.map(
  Effect.context<never>(),
  (context) => prometheusTextUnsafe(context)
)

const prometheusTextUnsafe = (context: Context.Context<never>): string => {
  const text = PrometheusMetrics.formatUnsafe(context)
  const upDown = new Set<string>()
  for (const metric of Metric.snapshotUnsafe(context)) {
    if (metric.type === "Counter" && !metric.state.incremental) upDown.add(metric.id)
  }
  if (upDown.size === 0) return text
  return text.replace(
    /^# TYPE (\S+) counter$/gm,
    (line, name: string) => upDown.has(name) ? `# TYPE ${name} gauge` : line
  )
}

/**
 * Where `layerPrometheus` serves.
 *
 * @example
 * ```ts
 * import type { Telemetry } from "effect-asynchat"
 *
 * const scrapedFromAnywhere: Telemetry.PrometheusOptions = { port: 9464, host: "0.0.0.0" }
 * ```
 *
 * @category options
 * @since 0.1.0
 */
export interface PrometheusOptions {
  /** The TCP port (0 picks a free one: `MetricsEndpoint` says which). */
  readonly port: number
  /**
   * The address to bind: 127.0.0.1 by default, so the metrics are not on the internet beside the server; give
   * `"0.0.0.0"` (or a private address) for a Prometheus on another host.
   */
  readonly host?: string | undefined
  /** The path served (default `/metrics`); any other is a 404. */
  readonly path?: string | undefined
}

/**
 * The endpoint `layerPrometheus` serves: its bound port and URL.
 *
 * @example
 * ```ts
 * import { Console, Effect } from "effect"
 * import { Telemetry } from "effect-asynchat"
 *
 * const announce = Effect.gen(function*() {
 *   const endpoint = yield* Telemetry.MetricsEndpoint
 *   yield* Console.log(`metrics on ${endpoint.url}`)
 * })
 * ```
 *
 * @category services
 * @since 0.1.0
 */
export class MetricsEndpoint extends Context.Service<MetricsEndpoint, {
  readonly host: string
  readonly port: number
  /** `http://host:port/metrics` */
  readonly url: string
}>()("effect-asynchat/Telemetry/MetricsEndpoint") {}

/**
 * The metrics endpoint could not listen (the port is taken, the address is not this host's).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import type { Telemetry } from "effect-asynchat"
 *
 * const report = (error: Telemetry.MetricsEndpointError) => Effect.logError(error.message)
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class MetricsEndpointError extends Data.TaggedError("MetricsEndpointError")<{
  readonly message: string
  readonly cause: unknown
}> {}

/**
 * A Prometheus scrape endpoint: `GET /metrics` (and `HEAD`) answers `prometheusText` of the context the layer is
 * built in, so the same metric registry as the server's. A plain `node:http` server of its own: a scrape is not
 * traced, not logged, and does not touch the chat server. Closed with the layer's scope. An application that
 * already has an Effect `HttpRouter` can add Effect's `PrometheusMetrics.layerHttp()` to it instead.
 *
 * @example
 * ```ts
 * import { NodeRuntime } from "@effect/platform-node"
 * import { Layer } from "effect"
 * import { Chat, ChatServer, Listener, Protocol, Telemetry, Terminator } from "effect-asynchat"
 *
 * const Echo = Protocol.forEach(Terminator.lf, (line) => Chat.push(line.bytes, "\n"))
 * // curl http://127.0.0.1:9464/metrics
 * Layer.merge(ChatServer.layer(Echo), Telemetry.layerPrometheus({ port: 9464 })).pipe(
 *   Layer.provide(Listener.layerTcp({ host: "127.0.0.1", port: 7000 })),
 *   Layer.launch,
 *   NodeRuntime.runMain
 * )
 * ```
 *
 * @category layers
 * @since 0.1.0
 */
export const layerPrometheus = (options: PrometheusOptions): Layer.Layer<MetricsEndpoint, MetricsEndpointError> =>
  Layer.effect(
    MetricsEndpoint,
    Effect.gen(function*() {
      const context = yield* Effect.context<never>()
      const host = options.host ?? "127.0.0.1"
      const path = options.path ?? "/metrics"
      const server = Http.createServer((request, response) => {
        const url = request.url ?? "/"
        const pathname = url.split("?", 1)[0]
        if (pathname !== path) {
          response.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not found\n")
          return
        }
        if (request.method !== "GET" && request.method !== "HEAD") {
          response.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" })
            .end("method not allowed\n")
          return
        }
        const body = prometheusTextUnsafe(context)
        response.writeHead(200, {
          "content-type": "text/plain; version=0.0.4; charset=utf-8",
          "content-length": Buffer.byteLength(body)
        })
        response.end(request.method === "HEAD" ? undefined : body)
      })
      yield* Effect.acquireRelease(
        Effect.callback<void, MetricsEndpointError>((resume) => {
          const onError = (cause: Error) =>
            resume(Effect.fail(new MetricsEndpointError({ message: `metrics endpoint: ${cause.message}`, cause })))
          server.once("error", onError)
          server.listen({ host, port: options.port }, () => {
            server.off("error", onError)
            // an accept that fails later (EMFILE) emits 'error' too: without a listener, an uncaught exception
            server.on("error", ignore)
            resume(Effect.void)
          })
        }),
        () =>
          Effect.callback<void>((resume) => {
            // a scraper's keep-alive connection would hold close() open
            server.closeAllConnections()
            server.close(() => resume(Effect.void))
          })
      )
      const bound = server.address()
      const port = bound !== null && typeof bound === "object" ? bound.port : options.port
      const shown = host.includes(":") ? `[${host}]` : host
      return MetricsEndpoint.of({ host, port, url: `http://${shown}:${port}${path}` })
    })
  )
