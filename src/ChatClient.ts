/**
 * A client: the same connection handle, framing and supervision as the server side, over TCP, a Unix
 * socket, any Node Duplex (stdin/stdout, a child process's pipes: asyncore's `file_dispatcher`), or the
 * in-memory test transport.
 *
 * - {@link connect}: a scoped connection you drive yourself: `chat` to write, `input` to read frames.
 * - {@link run}: runs a `Protocol` on the connection, exactly as a server would, until it is over.
 * - {@link layer}: a connection as a Layer providing {@link Connection}.
 *
 * Opening is bounded by `connectTimeout` (default 10 seconds) and retried by `retry` (a `Schedule`; by
 * default no retry); a failed attempt's socket is closed before the next.
 *
 * @since 0.1.0
 */
import { Context, Duration, Effect, Exit, Layer, type Schedule, Scope, type Stream } from "effect"
import * as Net from "node:net"
import * as NodeStream from "node:stream"
import * as Tls from "node:tls"
import type { ChatShape, TlsClientOptions } from "./Chat.ts"
import { formatAddress } from "./Chat.ts"
import * as ChatError from "./ChatError.ts"
import type * as ConnectionOptions from "./ConnectionOptions.ts"
import type * as Framing from "./Framing.ts"
import * as Runtime from "./internal/connection.ts"
import { settingsOf } from "./internal/settings.ts"
import { clientOptionsOf } from "./internal/tls.ts"
import { definedOnly, nodeSocketOptions } from "./internal/transport.ts"
import { fromStream, type Link, type SocketOptions } from "./Listener.ts"
import type * as Protocol from "./Protocol.ts"
import type * as Terminator from "./Terminator.ts"

/**
 * How to reach a peer: opening it yields a socket with its addresses, owned by the scope.
 *
 * @example
 * ```ts
 * import { ChatClient } from "effect-asynchat"
 *
 * const local: ChatClient.Connector = ChatClient.tcp({ host: "127.0.0.1", port: 7000 })
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Connector<R = never> {
  /** For logs and errors: `127.0.0.1:7000`, `unix:/tmp/s.sock`, `pipe:stdio`. */
  readonly target: string
  readonly open: Effect.Effect<Link, ChatError.ChatError, Scope.Scope | R>
}

const connectFailed = (target: string, cause: unknown) =>
  new ChatError.ChatError({
    reason: new ChatError.ConnectFailed({ target, cause })
  })

/**
 * Opens a Node socket, waits for `connect`, and hands it over as a stream link, closed with the scope. Not
 * `NodeSocket.makeNet`: for the same reason a listener is not `NodeSocketServer` (see `Listener.makeNode`), a
 * connection reads the stream itself, not through an effect `Socket`.
 */
const openNet = (
  target: string,
  options: Net.NetConnectOpts,
  // a TLS socket is ready once its handshake is done; a failed one fails the connect
  connect: () => Net.Socket = () => Net.createConnection({ ...options, allowHalfOpen: true }),
  ready: "connect" | "secureConnect" = "connect"
): Connector["open"] =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const conn = yield* Effect.callback<Net.Socket, ChatError.ChatError>((resume) => {
      // Half-open, as on the server: the peer's FIN ends our input only.
      const conn = connect()
      const onError = (cause: Error) => {
        conn.destroy()
        resume(Effect.fail(connectFailed(target, cause)))
      }
      conn.once("error", onError)
      conn.once(ready, () => {
        conn.off("error", onError)
        resume(Effect.succeed(conn))
      })
      return Effect.sync(() => conn.destroy())
    })
    // once a connection ran on it, its transport ends it (letting the last bytes drain) and destroys it
    yield* Scope.addFinalizer(
      scope,
      Effect.sync(() => {
        if (!conn.writableEnded) conn.destroy()
      })
    )
    const isUnix = "path" in options
    return fromStream(conn, {
      localAddress: isUnix
        ? { _tag: "Unix", path: options.path }
        : { _tag: "Inet", host: conn.localAddress ?? "", port: conn.localPort ?? 0 },
      remoteAddress: isUnix
        ? { _tag: "Unix", path: options.path }
        : { _tag: "Inet", host: conn.remoteAddress ?? "", port: conn.remotePort ?? 0 }
    })
  })

/**
 * A TCP peer, with the socket options of `Listener.SocketOptions` (`noDelay`, `keepAlive`).
 *
 * @example
 * ```ts
 * import { ChatClient } from "effect-asynchat"
 *
 * const redis = ChatClient.tcp({ host: "127.0.0.1", port: 6379, noDelay: true })
 * ```
 *
 * @category connectors
 * @since 0.1.0
 */
export const tcp = (
  options: { readonly host?: string | undefined; readonly port: number } & SocketOptions
): Connector => {
  const host = options.host ?? "127.0.0.1"
  const target = formatAddress({ _tag: "Inet", host, port: options.port })
  return { target, open: openNet(target, { ...nodeSocketOptions(options), host, port: options.port }) }
}

/**
 * Options of a TLS peer: a TCP peer's, with what to trust and what to present.
 *
 * @example
 * ```ts
 * import * as Fs from "node:fs"
 * import type { ChatClient } from "effect-asynchat"
 *
 * const internal: ChatClient.TlsOptions = { host: "10.0.0.7", port: 6380, ca: Fs.readFileSync("ca.crt"), servername: "redis.internal" }
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface TlsOptions extends SocketOptions, TlsClientOptions {
  readonly host?: string | undefined
  readonly port: number
}

/**
 * A TLS peer (`node:tls`): the connection opens once the handshake is done; a handshake that fails (a certificate
 * not trusted, a name that does not match) is a `ConnectFailed` that says why.
 *
 * @example
 * ```ts
 * import * as Fs from "node:fs"
 * import { ChatClient } from "effect-asynchat"
 *
 * const redis = ChatClient.tls({ host: "127.0.0.1", port: 6380, ca: Fs.readFileSync("ca.crt"), servername: "localhost" })
 * ```
 *
 * @category connectors
 * @since 0.1.0
 */
export const tls = (options: TlsOptions): Connector => {
  const host = options.host ?? "127.0.0.1"
  const target = formatAddress({ _tag: "Inet", host, port: options.port })
  const connectOptions: Tls.ConnectionOptions = definedOnly({
    ...nodeSocketOptions(options),
    host,
    port: options.port,
    allowHalfOpen: true,
    ...clientOptionsOf(options),
    servername: options.servername ?? (Net.isIP(host) === 0 ? host : undefined)
  })
  return {
    target,
    open: openNet(target, { host, port: options.port }, () => Tls.connect(connectOptions), "secureConnect")
  }
}

/**
 * A Unix socket peer.
 *
 * @example
 * ```ts
 * import { ChatClient } from "effect-asynchat"
 *
 * const local = ChatClient.unix("/tmp/chat.sock")
 * ```
 *
 * @category connectors
 * @since 0.1.0
 */
export const unix = (path: string): Connector => {
  const target = formatAddress({ _tag: "Unix", path })
  return { target, open: openNet(target, { path }) }
}

/**
 * Any Node Duplex: asyncore's `file_dispatcher`. `open` is run in the connection's scope; the Duplex is
 * destroyed when the scope closes. Use `duplexOf` to pair a readable and a writable (stdin and stdout, a
 * child's stdout and stdin).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { ChatClient } from "effect-asynchat"
 *
 * const stdio = ChatClient.duplex("stdio", Effect.sync(() => ChatClient.duplexOf(process.stdin, process.stdout)))
 * ```
 *
 * @category connectors
 * @since 0.1.0
 */
export const duplex = <E, R>(
  name: string,
  open: Effect.Effect<NodeStream.Duplex, E, R>
): Connector<Exclude<R, Scope.Scope>> => ({
  target: formatAddress({ _tag: "Pipe", name }),
  open: Effect.gen(function*() {
    const stream = yield* Effect.acquireRelease(
      Effect.mapError(open, (cause) => connectFailed(`pipe:${name}`, cause)),
      (stream) =>
        Effect.sync(() => {
          // destroying a half-finished Duplex.from pair emits an AbortError nobody else listens for
          stream.on("error", () => {})
          // once a connection ran on it, its transport ends it (letting the last bytes drain) and destroys it
          if (!stream.writableEnded) stream.destroy()
        })
    )
    return fromStream(stream, { localAddress: { _tag: "Pipe", name }, remoteAddress: { _tag: "Pipe", name } })
  }) as Effect.Effect<Link, ChatError.ChatError, Scope.Scope | Exclude<R, Scope.Scope>>
})

/**
 * One Duplex from a readable and a writable side, e.g. `process.stdin` and `process.stdout`, or a child
 * process's `stdout` and `stdin`.
 *
 * @example
 * ```ts
 * import { spawn } from "node:child_process"
 * import { ChatClient } from "effect-asynchat"
 *
 * const child = spawn("cat")
 * const pipes = ChatClient.duplexOf(child.stdout, child.stdin)
 * ```
 *
 * @category connectors
 * @since 0.1.0
 */
export const duplexOf = (readable: NodeJS.ReadableStream, writable: NodeJS.WritableStream): NodeStream.Duplex =>
  NodeStream.Duplex.from({ readable, writable })

/**
 * Options of a client connection.
 *
 * @example
 * ```ts
 * import { Schedule } from "effect"
 * import type { ChatClient } from "effect-asynchat"
 *
 * const patient: ChatClient.Options = { connectTimeout: "2 seconds", retry: Schedule.exponential("100 millis") }
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Options extends ConnectionOptions.ConnectionOptions {
  /** Bound on one attempt to open (default 10 seconds). */
  readonly connectTimeout?: Duration.Input | undefined
  /** Retries a failed open (by default, none). */
  readonly retry?: Schedule.Schedule<unknown, ChatError.ChatError> | undefined
}

/** Opens `connector` with its timeout and retries; every attempt has its own scope, closed if it fails. */
const openWith = <R>(connector: Connector<R>, options: Options) => {
  const timeout = Duration.fromInputUnsafe(options.connectTimeout ?? "10 seconds")
  const attempt = Effect.gen(function*() {
    const outer = yield* Effect.scope
    const scope = yield* Scope.fork(outer)
    return yield* connector.open.pipe(
      Effect.timeoutOrElse({
        duration: timeout,
        orElse: () =>
          Effect.fail(connectFailed(connector.target, new Error(`timed out after ${Duration.format(timeout)}`)))
      }),
      Scope.provide(scope),
      Effect.onExit((exit) => Exit.isFailure(exit) ? Scope.close(scope, exit) : Effect.void)
    )
  })
  return options.retry === undefined ? attempt : Effect.retry(attempt, options.retry)
}

/**
 * Where client connections take their ids (the `id` of their `Chat` handle, in their logs and spans): a
 * counter, one for the whole program unless one is provided, e.g. for a pool whose clients are numbered on
 * their own, or a test that wants its ids from 1.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { ChatClient, Terminator } from "effect-asynchat"
 *
 * const first = ChatClient.connect(ChatClient.tcp({ port: 7000 }), { terminator: Terminator.lf }).pipe(
 *   Effect.map((client) => client.chat.id), // 1
 *   Effect.provideService(ChatClient.ClientIds, { next: 0 })
 * )
 * ```
 *
 * @category services
 * @since 0.1.0
 */
export const ClientIds: Context.Reference<{ next: number }> = Context.Reference(
  "effect-asynchat/ChatClient/ClientIds",
  {
    defaultValue: () => ({ next: 0 })
  }
)

/** The next client id, from the `ClientIds` in context. */
const nextClientId = Effect.map(ClientIds, (ids) => ++ids.next)

/**
 * A client connection driven by hand: write with `chat`, read from `input` (frames, or a machine's
 * messages). The writer runs in the scope; closing the scope closes the connection.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { ChatClient, Terminator } from "effect-asynchat"
 *
 * const ping = Effect.scoped(Effect.gen(function*() {
 *   const client = yield* ChatClient.connect(ChatClient.tcp({ port: 6379 }), { terminator: Terminator.crlf })
 *   yield* client.chat.push("PING\r\n")
 *   return yield* Stream.runHead(client.input)
 * }))
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Client<A, EI = never> {
  readonly chat: ChatShape
  readonly input: Stream.Stream<A, ChatError.ChatError | EI>
}

/**
 * How a hand-driven connection cuts its input: one terminator, a machine, or a decoder.
 *
 * @example
 * ```ts
 * import { ChatClient, Terminator } from "effect-asynchat"
 *
 * const lines: ChatClient.FramingOption<never, never> = { terminator: Terminator.lf }
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export type FramingOption<A, EI> =
  | { readonly terminator: Terminator.Terminator }
  | { readonly machine: Framing.Machine<any, A, EI> }
  | { readonly decoder: Framing.Decoding<A, EI> }

/**
 * Opens a connection for hand-driven use.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { ChatClient, Terminator } from "effect-asynchat"
 *
 * const hello = Effect.scoped(Effect.gen(function*() {
 *   const client = yield* ChatClient.connect(ChatClient.tcp({ port: 7000 }), { terminator: Terminator.lf })
 *   yield* client.chat.push("hello\n")
 *   return yield* Stream.runHead(client.input)
 * }))
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const connect: {
  <R>(
    connector: Connector<R>,
    options: { readonly terminator: Terminator.Terminator } & Options
  ): Effect.Effect<Client<Framing.Frame>, ChatError.ChatError, Scope.Scope | R>
  <R, A, EI>(
    connector: Connector<R>,
    options: { readonly machine: Framing.Machine<any, A, EI> } & Options
  ): Effect.Effect<Client<A, EI>, ChatError.ChatError, Scope.Scope | R>
  <R, A, EI>(
    connector: Connector<R>,
    options: { readonly decoder: Framing.Decoding<A, EI> } & Options
  ): Effect.Effect<Client<A, EI>, ChatError.ChatError, Scope.Scope | R>
} = <R>(connector: Connector<R>, options: FramingOption<unknown, unknown> & Options) =>
  Effect.gen(function*() {
    // The connection's own scope: closed by `close`, `closeWhenDone` or a write failure, or with the caller's.
    const scope = yield* Scope.fork(yield* Effect.scope)
    const link = yield* Scope.provide(openWith(connector, options), scope)
    const connection = yield* Runtime.open({
      link,
      id: yield* nextClientId,
      settings: settingsOf(options),
      mode: "machine" in options
        ? { _tag: "Machine", machine: options.machine }
        : "decoder" in options
        ? { _tag: "Decoder", decoder: options.decoder }
        : { _tag: "Fixed", terminator: options.terminator },
      openError: (cause) => connectFailed(connector.target, cause)
    }).pipe(Scope.provide(scope))
    // The output's end (closeWhenDone, a failure), `close` or the transport closing ends the connection: its
    // scope closes, and with it the socket.
    yield* Effect.forkScoped(
      Effect.andThen(Effect.exit(connection.outcome), Scope.close(scope, Exit.void))
    )
    return { chat: connection.chat, input: connection.input } as Client<any, any>
  }) as any

/**
 * Runs `protocol` on a connection to `connector`, exactly as a server runs it on an accepted one, and
 * completes when the connection is over: with the handler's failure, a `ChatError`, or success.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { Chat, ChatClient, Protocol, Terminator } from "effect-asynchat"
 *
 * const Greeter = Protocol.make(Terminator.lf, (lines) =>
 *   Chat.push("hello\n").pipe(Effect.andThen(Stream.runForEach(lines, (line) => Effect.log(line.bytes)))))
 * const program = ChatClient.run(ChatClient.tcp({ port: 7000 }), Greeter)
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const run = <E, R, RC>(
  connector: Connector<RC>,
  protocol: Protocol.Protocol<E, R>,
  options: Options = {}
): Effect.Effect<void, E | ChatError.ChatError, R | RC> =>
  Effect.scoped(Effect.gen(function*() {
    const link = yield* openWith(connector, options)
    return yield* Runtime.run(
      Runtime.runner({ settings: settingsOf(options), protocol, role: "client" }),
      link,
      yield* nextClientId
    )
  }))

/**
 * The connection provided by {@link layer}.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { ChatClient } from "effect-asynchat"
 *
 * const send = (line: string) => Effect.flatMap(ChatClient.Connection, (client) => client.chat.push(line, "\n"))
 * ```
 *
 * @category services
 * @since 0.1.0
 */
export class Connection extends Context.Service<Connection, Client<Framing.Frame>>()(
  "effect-asynchat/ChatClient/Connection"
) {}

/**
 * A line-or-frame client connection as a Layer.
 *
 * @example
 * ```ts
 * import { ChatClient, Terminator } from "effect-asynchat"
 *
 * const Redis = ChatClient.layer(ChatClient.tcp({ port: 6379 }), { terminator: Terminator.crlf })
 * ```
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = <R>(
  connector: Connector<R>,
  options: { readonly terminator: Terminator.Terminator } & Options
): Layer.Layer<Connection, ChatError.ChatError, Exclude<R, Scope.Scope>> =>
  Layer.effect(Connection, connect(connector, options)) as Layer.Layer<
    Connection,
    ChatError.ChatError,
    Exclude<R, Scope.Scope>
  >
