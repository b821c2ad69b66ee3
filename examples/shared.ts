/**
 * What the examples share: the `--host` / `--port` flags, the operator's limits every server takes
 * (`--idle-timeout`, `--max-connections`, ...), the telemetry flags (`--otlp`, `--metrics-port`), and a way to
 * serve a protocol on TCP until Ctrl-C (which shuts the server down gracefully), alone or (`--workers n`) as n
 * worker processes sharing the port.
 */
import { Console, Data, Duration, Effect, Layer, Option } from "effect"
import { Chat, ChatServer, Listener, type Protocol, Telemetry, Workers } from "effect-asynchat"
import { Command, Flag } from "effect/cli"
import { OtlpExporter } from "effect/observability"
import type { Buffer } from "node:buffer"
import * as Fs from "node:fs"

/** `--host`, default 127.0.0.1: where to listen, or where to connect. */
export const host = Flag.String("host").pipe(
  Flag.withDescription("Address to listen on (servers) or connect to (clients) (default 127.0.0.1)"),
  Flag.withDefault("127.0.0.1")
)

/** `--port`, with each example's own default. */
export const port = (fallback: number, role: "server" | "client" = "server") =>
  Flag.Int("port").pipe(
    Flag.withDescription(
      role === "server"
        ? `TCP port to listen on (default ${fallback}; 0 picks a free one)`
        : `TCP port to connect to (default ${fallback})`
    ),
    Flag.withDefault(fallback)
  )

/**
 * The library's own defaults, as documented on `ChatServer.Options`: shown in `--help` where an example keeps
 * them (a flag left out leaves the option to the library, so only the help text restates them).
 */
const libraryDefaults = {
  idleTimeout: "5 minutes",
  frameTimeout: "30 seconds",
  writeTimeout: "1 minute",
  shutdownTimeout: "5 seconds",
  maxConnections: 10_000,
  maxFrameLength: 64 * 1024
} as const

/** "30 seconds", "250 millis", "infinity" or "off" (no timeout); `Duration`'s own spelling otherwise. */
const parseDuration = (text: string): Option.Option<Duration.Duration> => {
  const trimmed = text.trim()
  if (/^(infinity|off|none)$/i.test(trimmed)) return Option.some(Duration.infinity)
  return Option.filter(Duration.fromInput(trimmed as Duration.Input), Duration.isGreaterThanOrEqualTo(Duration.zero))
}

const showDuration = (input: Duration.Input) => {
  const d = Duration.fromInputUnsafe(input)
  return Duration.isFinite(d) ? Duration.format(d) : "off"
}

const durationFlag = (name: string, what: string, fallback: Duration.Input) =>
  Flag.String(name).pipe(
    Flag.withMetavar("duration"),
    Flag.withDescription(`${what} (default ${showDuration(fallback)}; e.g. "30 seconds", "off")`),
    Flag.filterMap(
      parseDuration,
      (text) => `--${name}: expected a duration such as "30 seconds", "250 millis" or "off", got "${text}"`
    ),
    Flag.optional
  )

const countFlag = (name: string, what: string, fallback: number) =>
  Flag.Int(name).pipe(
    Flag.withMetavar("n"),
    Flag.withDescription(`${what} (default ${fallback})`),
    Flag.filter((n) => n > 0, (n) => `--${name} must be a positive whole number, got ${n}`),
    Flag.optional
  )

/**
 * The limits an operator sets on any server example, each flag's help showing that example's default:
 * `{ ...Shared.limits(options) }` in a command's flags, then `Shared.withLimits(options, flags)` for the server.
 */
export const limits = (defaults: ChatServer.Options = {}) => ({
  idleTimeout: durationFlag(
    "idle-timeout",
    "Close a connection that sends nothing for this long",
    defaults.idleTimeout ?? libraryDefaults.idleTimeout
  ),
  frameTimeout: durationFlag(
    "frame-timeout",
    "Close a connection whose frame is incomplete this long after its first byte",
    defaults.frameTimeout ?? libraryDefaults.frameTimeout
  ),
  writeTimeout: durationFlag(
    "write-timeout",
    "Close a connection that reads none of its output for this long",
    defaults.writeTimeout ?? libraryDefaults.writeTimeout
  ),
  shutdownTimeout: durationFlag(
    "shutdown-timeout",
    "On Ctrl-C, wait this long for open connections before cutting them off",
    defaults.shutdownTimeout ?? libraryDefaults.shutdownTimeout
  ),
  maxConnections: countFlag(
    "max-connections",
    "Connections served at once; one more is refused",
    defaults.maxConnections ?? libraryDefaults.maxConnections
  ),
  maxFrameLength: countFlag(
    "max-frame-length",
    "The longest frame in bytes (a line, a header block, a value); longer closes the connection",
    defaults.maxFrameLength ?? libraryDefaults.maxFrameLength
  )
})

/** The values of the `limits` flags: `None` where the operator kept the example's default. */
export interface Limits {
  readonly idleTimeout: Option.Option<Duration.Duration>
  readonly frameTimeout: Option.Option<Duration.Duration>
  readonly writeTimeout: Option.Option<Duration.Duration>
  readonly shutdownTimeout: Option.Option<Duration.Duration>
  readonly maxConnections: Option.Option<number>
  readonly maxFrameLength: Option.Option<number>
}

const pemFlag = (name: string, what: string) =>
  Flag.String(name).pipe(
    Flag.withMetavar("file"),
    Flag.withDescription(`${what} (PEM); with both --tls-key and --tls-cert the server speaks TLS`),
    Flag.optional
  )

/** `--otlp url` and `--metrics-port n`: where a server example's telemetry goes, if anywhere. */
export const telemetry = {
  otlp: Flag.String("otlp").pipe(
    Flag.withMetavar("url"),
    Flag.withDescription(
      "Send traces (a span per connection), metrics and logs over OTLP/HTTP (JSON) to this collector, " +
        "e.g. http://127.0.0.1:4318 (default none: no tracer, no span)"
    ),
    Flag.optional
  ),
  metricsPort: Flag.Int("metrics-port").pipe(
    Flag.withMetavar("n"),
    Flag.withDescription(
      "Serve the metrics in the Prometheus text format on http://127.0.0.1:<n>/metrics (default none; 0 picks a free " +
        "port; with --workers, worker i serves on n + i)"
    ),
    Flag.filter((n) => n >= 0 && n <= 65535, (n) => `--metrics-port must be a port number (0 to 65535), got ${n}`),
    Flag.optional
  )
}

/** The values of the `telemetry` flags: `None` for no export. */
export interface TelemetryFlags {
  readonly otlp: Option.Option<string>
  readonly metricsPort: Option.Option<number>
}

/**
 * The telemetry layers `flags` ask for, for the service `serviceName`: OTLP export with `--otlp`, a Prometheus
 * endpoint (on 127.0.0.1, which it prints) with `--metrics-port`, nothing without them.
 */
export const telemetryLayer = (
  serviceName: string,
  flags: TelemetryFlags & Partial<WorkersFlag>
): Layer.Layer<OtlpExporter.Flusher, Telemetry.MetricsEndpointError> => {
  // A supervisor of workers serves no connection: its workers export, each its own metrics on the port after the
  // one before (`--metrics-port 9464 --workers 2`: 9464 and 9465; 0, a free port each).
  const worker = Workers.current()
  if (worker === undefined && Option.isSome(flags.workers ?? Option.none())) return OtlpExporter.layerFlusher
  // without --otlp, an empty Flusher in its place (one Set): no tracer, logger or exporter is installed
  const otlp = Option.match(flags.otlp, {
    onNone: () => OtlpExporter.layerFlusher,
    onSome: (url) => Telemetry.layerOtlp({ url, serviceName })
  })
  const prometheus = Option.match(
    Option.map(flags.metricsPort, (port) => port === 0 ? 0 : port + (worker?.index ?? 0)),
    {
      onNone: () => Layer.empty,
      onSome: (port) =>
        Layer.effectDiscard(Effect.gen(function*() {
          const endpoint = yield* Telemetry.MetricsEndpoint
          yield* Console.log(`metrics on ${endpoint.url}`)
        })).pipe(Layer.provide(Telemetry.layerPrometheus({ port })))
    }
  )
  return Layer.merge(otlp, prometheus)
}

/**
 * A server example's command with its telemetry: the layers of its `--otlp` and `--metrics-port` around its
 * handler (closed after it, so the last spans are sent once the server has shut down), named
 * `effect-asynchat-<command>` (the root command, which runs hello, `effect-asynchat`).
 */
export const withTelemetry = <const Name extends string, Input extends TelemetryFlags, ContextInput, E, R>(
  self: Command.Command<Name, Input, ContextInput, E, R>
) =>
  Command.provide(
    self,
    (flags: Input) =>
      telemetryLayer(self.name.startsWith("effect-asynchat") ? self.name : `effect-asynchat-${self.name}`, flags)
  )

/**
 * A server example's flags: `--host`, `--port` (with its default), `--tls-key`/`--tls-cert`, `limits` and
 * `telemetry` (which `withTelemetry` puts to use).
 */
export const serverFlags = (defaultPort: number, defaults: ChatServer.Options = {}) => ({
  host,
  port: port(defaultPort),
  tlsKey: pemFlag("tls-key", "The server's private key"),
  tlsCert: pemFlag("tls-cert", "The server's certificate chain"),
  ...proxy,
  ...limits(defaults),
  ...telemetry
})

/** `--proxy-protocol` and `--trusted-proxy`: every connection comes through a proxy that sends a PROXY header. */
export const proxy = {
  proxyProtocol: Flag.Boolean("proxy-protocol").pipe(
    Flag.withDescription(
      "Expect a PROXY protocol header (v1 or v2, HAProxy's send-proxy / send-proxy-v2) before each connection's " +
        "first byte, from 127.0.0.1 or a --trusted-proxy only; the client's address is then the connection's"
    ),
    Flag.withDefault(false)
  ),
  trustedProxy: Flag.String("trusted-proxy").pipe(
    Flag.withMetavar("addrs"),
    Flag.withDescription("With --proxy-protocol: more proxies to trust, addresses or CIDR blocks, comma-separated"),
    Flag.map((list) => list.split(",").map((a) => a.trim()).filter((a) => a !== "")),
    Flag.optional
  )
}

/** The values of the `proxy` flags. */
export interface ProxyFlags {
  readonly proxyProtocol: boolean
  readonly trustedProxy: Option.Option<ReadonlyArray<string>>
}

/**
 * What a server example's `run` is given: where to listen, its TLS files if any, the operator's limits, and the
 * telemetry flags.
 */
export interface ServerFlags extends Limits, TelemetryFlags, ProxyFlags {
  readonly host: string
  readonly port: number
  readonly tlsKey: Option.Option<string>
  readonly tlsCert: Option.Option<string>
}

/** The TLS flags could not be used: one without the other, or a file that cannot be read. */
export class TlsFilesError extends Data.TaggedError("TlsFilesError")<{ readonly message: string }> {}

/** The TLS files of `flags`, read: undefined when neither is given; one without the other is an error. */
export const readTlsFiles = (flags: {
  readonly tlsKey?: Option.Option<string> | undefined
  readonly tlsCert?: Option.Option<string> | undefined
}): Effect.Effect<{ readonly key: Buffer; readonly cert: Buffer } | undefined, TlsFilesError> => {
  const key = flags.tlsKey ?? Option.none()
  const cert = flags.tlsCert ?? Option.none()
  if (Option.isNone(key) && Option.isNone(cert)) return Effect.succeed(undefined)
  if (Option.isNone(key) || Option.isNone(cert)) {
    return Effect.fail(new TlsFilesError({ message: "--tls-key and --tls-cert go together: give both" }))
  }
  return Effect.try({
    try: () => ({ key: Fs.readFileSync(key.value), cert: Fs.readFileSync(cert.value) }),
    catch: (cause) => new TlsFilesError({ message: `cannot read the TLS files: ${(cause as Error).message}` })
  })
}

/**
 * The listener of `flags`: TLS when both PEM files are given, TCP when neither is. In a worker, on the port its
 * supervisor chose, with `reusePort` when the workers share it that way.
 */
export const listenerOf = (flags: {
  readonly host: string
  readonly port: number
  readonly tlsKey?: Option.Option<string> | undefined
  readonly tlsCert?: Option.Option<string> | undefined
  readonly proxyProtocol?: boolean | undefined
  readonly trustedProxy?: Option.Option<ReadonlyArray<string>> | undefined
}): Layer.Layer<Listener.Listener, Listener.SocketServerError | TlsFilesError> =>
  Layer.unwrap(Effect.map(
    readTlsFiles(flags),
    (pems) => {
      const trusted = ["127.0.0.1", "::1", ...Option.getOrElse(flags.trustedProxy ?? Option.none(), () => [])]
      const where = {
        host: flags.host,
        port: portOf(flags),
        reusePort: Workers.current()?.reusePort,
        proxyProtocol: flags.proxyProtocol === true ? { trusted } : undefined
      }
      return pems === undefined ? Listener.layerTcp(where) : Listener.layerTls({ ...where, ...pems })
    }
  ))

/** `--workers n`: the server as n processes on one port, supervised. */
export const workers = Flag.Int("workers").pipe(
  Flag.withMetavar("n"),
  Flag.withDescription(
    "Serve as n worker processes sharing the port (one per core: nproc), under a supervisor that restarts one " +
      "that dies and stops them all on Ctrl-C (default: this process alone)"
  ),
  Flag.filter((n) => n > 0, (n) => `--workers must be a positive whole number, got ${n}`),
  Flag.optional
)

/** The value of the `workers` flag. */
export interface WorkersFlag {
  readonly workers: Option.Option<number>
}

/** Where a supervisor tells its workers the port they share (a concrete one: port 0 cannot be shared). */
const PORT_ENV = "EFFECT_ASYNCHAT_EXAMPLE_PORT"

/** The port to listen on: in a worker its supervisor's, otherwise the flag's. */
const portOf = (flags: { readonly port: number }) => {
  const port = Number(process.env[PORT_ENV])
  return Workers.current() !== undefined && Number.isSafeInteger(port) ? port : flags.port
}

/**
 * Runs `serve` (a server that runs until interrupted) in this process; with `--workers n`, this process is
 * instead the supervisor of n workers, each this same command run again, which run `serve` on one port (0 picks
 * a free one first). `announce` tells how to try it, with the port: once by the supervisor, or by `serve`
 * itself when alone (it is not called in a worker). A worker stops when its supervisor goes, and is given its
 * `shutdownTimeout` and 5 seconds more to stop before it is killed.
 */
export const withWorkers = <E, R>(
  flags: {
    readonly host: string
    readonly port: number
    readonly workers?: Option.Option<number> | undefined
    readonly shutdownTimeout?: Option.Option<Duration.Duration> | undefined
  },
  name: string,
  announce: (port: number) => Effect.Effect<void>,
  serve: Effect.Effect<never, E, R>
): Effect.Effect<never, E | Workers.WorkersError, R> => {
  if (Workers.current() !== undefined) return Effect.scoped(Effect.andThen(Workers.followSupervisor, serve))
  const count = flags.workers ?? Option.none()
  if (Option.isNone(count)) return serve
  return Effect.scoped(Effect.gen(function*() {
    const port = flags.port === 0 ? yield* Workers.freePort(flags.host) : flags.port
    const shutdown = Option.getOrElse(flags.shutdownTimeout ?? Option.none(), () => Duration.seconds(5))
    const workers = yield* Workers.make({
      count: count.value,
      env: { [PORT_ENV]: String(port) },
      stopTimeout: Duration.isFinite(shutdown) ? Duration.sum(shutdown, Duration.seconds(5)) : Duration.infinity
    })
    yield* Console.log(
      `${name}: ${count.value} workers on ${flags.host}:${port} by ${Workers.defaultStrategy}, supervisor pid ${process.pid} (Ctrl-C to stop)`
    )
    yield* announce(port)
    return yield* workers.join
  }))
}

/** An example's server options with what the operator set on the command line in their place. */
export const withLimits = (defaults: ChatServer.Options, limits: Limits): ChatServer.Options => ({
  ...defaults,
  idleTimeout: Option.getOrElse(limits.idleTimeout, () => defaults.idleTimeout),
  frameTimeout: Option.getOrElse(limits.frameTimeout, () => defaults.frameTimeout),
  writeTimeout: Option.getOrElse(limits.writeTimeout, () => defaults.writeTimeout),
  shutdownTimeout: Option.getOrElse(limits.shutdownTimeout, () => defaults.shutdownTimeout),
  maxConnections: Option.getOrElse(limits.maxConnections, () => defaults.maxConnections),
  maxFrameLength: Option.getOrElse(limits.maxFrameLength, () => defaults.maxFrameLength)
})

/**
 * Serves `protocol` on `host:port` until interrupted, then prints how to try it: `tryIt` gets the bound
 * address (useful with port 0). With `workers` (`--workers n`), as n worker processes (see `withWorkers`).
 */
export const serveTcp = <E, R>(
  protocol: Protocol.Protocol<E, R>,
  options: {
    readonly host: string
    readonly port: number
    readonly tlsKey?: Option.Option<string> | undefined
    readonly tlsCert?: Option.Option<string> | undefined
    readonly proxyProtocol?: boolean | undefined
    readonly trustedProxy?: Option.Option<ReadonlyArray<string>> | undefined
    readonly workers?: Option.Option<number> | undefined
    readonly shutdownTimeout?: Option.Option<Duration.Duration> | undefined
    readonly name: string
    /** Commands to try it with: `tls` when it speaks TLS (`tlsCert` the certificate to trust). */
    readonly tryIt: (host: string, port: number, tls: { readonly cert: string } | undefined) => ReadonlyArray<string>
    readonly server?: ChatServer.Options | undefined
  }
) => {
  const tls = Option.map(options.tlsCert ?? Option.none(), (cert) => ({ cert }))
  const announce = (port: number) =>
    Effect.forEach(
      options.tryIt(options.host, port, Option.getOrUndefined(tls)),
      (line) => Console.log(`  try: ${line}`),
      { discard: true }
    )
  const worker = Workers.current()
  const serve = Effect.scoped(Effect.gen(function*() {
    const server = yield* ChatServer.make(protocol, options.server)
    const address = server.address
    const boundPort = address._tag === "Inet" ? address.port : options.port
    yield* Console.log(
      `${options.name} listening on ${Chat.formatAddress(address)}${Option.isSome(tls) ? " with TLS" : ""} ${
        worker === undefined ? "(Ctrl-C to stop)" : `(worker ${worker.index}, pid ${process.pid})`
      }`
    )
    if (worker === undefined) yield* announce(boundPort)
    return yield* Effect.never
  })).pipe(Effect.provide(listenerOf(options)))
  return withWorkers(options, options.name, announce, serve)
}
