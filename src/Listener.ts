/**
 * Where a server's connections come from: a TCP port, a Unix socket path (both on `node:net`), or the in-memory
 * test transport.
 *
 * A listener only accepts; `ChatServer.make` serves what it accepts. Closing the listener's Layer closes the
 * listening socket; `stopAccepting` does so earlier, during a graceful shutdown, so that new connections are
 * refused while open ones finish.
 *
 * @since 0.1.0
 */
import { Context, Duration, Effect, Layer, type Scope } from "effect"
import type * as Socket from "effect/socket/Socket"
import * as SocketServer from "effect/socket/SocketServer"
import * as Net from "node:net"
import type * as NodeStream from "node:stream"
import * as Tls from "node:tls"
import type { Address, TlsInfo, TlsServerOptions } from "./Chat.ts"
import type { ChatError } from "./ChatError.ts"
import { type Addresses, type Reader, readerOf, readHeader } from "./internal/proxy-header.ts"
import { infoOf, serverOptionsOf } from "./internal/tls.ts"
import { definedOnly, ignore, nodeSocketOptions } from "./internal/transport.ts"
import type * as ProxyProtocol from "./ProxyProtocol.ts"

/**
 * Effect's own open error, whose message is just "Open": this one says why (`Open: listen EADDRINUSE: address
 * already in use 127.0.0.1:7000`), on the first line of the log, with the same tag for `catchTag`.
 */
class ListenFailed extends SocketServer.SocketServerOpenError {
  override get message(): string {
    return this.cause instanceof Error ? `Open: ${this.cause.message}` : "Open"
  }
}

/**
 * What a listener accepts and a client connects: a transport with the addresses of its two ends. Either a Node
 * stream (a TCP or Unix socket, a TLS socket, any Duplex, the in-memory transport's ends) or an effect `Socket`
 * (adapted to a stream when its connection opens): connections run on both alike, reading and writing the
 * stream directly, one callback per read.
 *
 * @example
 * ```ts
 * import { Chat, type Listener } from "effect-asynchat"
 *
 * const describe = (link: Listener.Link) => `${link._tag} link from ${Chat.formatAddress(link.remoteAddress)}`
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export type Link = StreamLink | SocketLink

/**
 * A Node stream as a link.
 *
 * @example
 * ```ts
 * import type { Listener } from "effect-asynchat"
 *
 * const isPipe = (link: Listener.StreamLink) => link.localAddress._tag === "Pipe"
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface StreamLink {
  readonly _tag: "Stream"
  readonly stream: NodeStream.Duplex
  readonly localAddress: Address
  readonly remoteAddress: Address
  /** What its TLS negotiated, when the stream is a TLS socket whose handshake is done. */
  readonly tls?: TlsInfo | undefined
  /**
   * Why it must not be served, when its listener found it unfit (an invalid PROXY header): the connection that
   * takes it over fails with this at once, logged with its id and peer and counted as any failure, and the stream
   * is destroyed.
   */
  readonly failure?: ChatError | undefined
}

/**
 * An effect `Socket` as a link: its reader and writer are acquired when the connection opens, in its scope.
 *
 * @example
 * ```ts
 * import type { Listener } from "effect-asynchat"
 *
 * const socketOf = (link: Listener.SocketLink) => link.socket
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface SocketLink {
  readonly _tag: "Socket"
  readonly socket: Socket.Socket
  readonly localAddress: Address
  readonly remoteAddress: Address
}

/**
 * A Node stream (a TCP or Unix socket, any Duplex) as a `Link`. The connection that takes it over ends the
 * stream when it closes, once what was written is flushed (within a few seconds), and destroys it.
 *
 * @example
 * ```ts
 * import * as Net from "node:net"
 * import { Listener } from "effect-asynchat"
 *
 * const link = (conn: Net.Socket): Listener.Link =>
 *   Listener.fromStream(conn, {
 *     localAddress: { _tag: "Inet", host: conn.localAddress ?? "", port: conn.localPort ?? 0 },
 *     remoteAddress: { _tag: "Inet", host: conn.remoteAddress ?? "", port: conn.remotePort ?? 0 }
 *   })
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const fromStream = (
  stream: NodeStream.Duplex,
  addresses: { readonly localAddress: Address; readonly remoteAddress: Address }
): Link => streamLinkOf(stream, addresses, undefined)

const streamLinkOf = (stream: NodeStream.Duplex, addresses: Addresses, failure: ChatError | undefined): StreamLink => ({
  _tag: "Stream",
  stream,
  localAddress: addresses.localAddress,
  remoteAddress: addresses.remoteAddress,
  tls: stream instanceof Tls.TLSSocket ? infoOf(stream) : undefined,
  failure
})

/**
 * An effect `Socket` as a `Link`: any transport Effect can speak (a WebSocket, a socket of a platform of
 * its own) runs the same protocols. A failure to open it fails the connection that takes it over.
 *
 * @example
 * ```ts
 * import * as NodeSocket from "@effect/platform-node/NodeSocket"
 * import { Effect } from "effect"
 * import { Listener } from "effect-asynchat"
 *
 * const link = Effect.map(NodeSocket.makeNet({ host: "127.0.0.1", port: 7000 }), (socket) =>
 *   Listener.fromSocket(socket, {
 *     localAddress: { _tag: "Pipe", name: "client" },
 *     remoteAddress: { _tag: "Inet", host: "127.0.0.1", port: 7000 }
 *   }))
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const fromSocket = (
  socket: Socket.Socket,
  addresses: { readonly localAddress: Address; readonly remoteAddress: Address }
): Link => ({
  _tag: "Socket",
  socket,
  localAddress: addresses.localAddress,
  remoteAddress: addresses.remoteAddress
})

/**
 * What a listener does.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Chat, Listener } from "effect-asynchat"
 *
 * const where = Effect.map(Listener.Listener, (listener) => Chat.formatAddress(listener.address))
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface ListenerShape {
  /** The bound address: with port 0, the port the system chose. */
  readonly address: Address
  /** Hands every accepted connection to `onConnection`, in order, until interrupted. */
  readonly accept: (onConnection: (link: Link) => void) => Effect.Effect<never>
  /** Closes the listening socket now: new connections are refused, open ones are untouched. */
  readonly stopAccepting: Effect.Effect<void>
}

/**
 * The listener a server accepts from.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { Listener } from "effect-asynchat"
 *
 * const onAnyPort: Layer.Layer<Listener.Listener, Listener.SocketServerError> = Listener.layerTcp({ port: 0 })
 * ```
 *
 * @category services
 * @since 0.1.0
 */
export class Listener extends Context.Service<Listener, ListenerShape>()("effect-asynchat/Listener") {}

/**
 * The error of opening a listener (the port is in use, the path exists, permission denied).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Listener } from "effect-asynchat"
 *
 * const describe = (error: Listener.SocketServerError) => Effect.logError("cannot listen", error.reason)
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export type SocketServerError = SocketServer.SocketServerError

/**
 * Options of a TCP socket, a listener's accepted ones and a client's alike. Each defaults to Node's.
 *
 * @example
 * ```ts
 * import type { Listener } from "effect-asynchat"
 *
 * const interactive: Listener.SocketOptions = { noDelay: true, keepAlive: true, keepAliveInitialDelay: "1 minute" }
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface SocketOptions {
  /**
   * Sends every write at once (`TCP_NODELAY`) instead of holding a small one back until the last is acknowledged
   * (Nagle's algorithm, Node's default): for request/response protocols whose answers are small.
   */
  readonly noDelay?: boolean | undefined
  /** Probes a silent peer (`SO_KEEPALIVE`), so a peer that vanished without a FIN is found out (default off). */
  readonly keepAlive?: boolean | undefined
  /** With `keepAlive`, how long the connection is silent before the first probe (default the system's). */
  readonly keepAliveInitialDelay?: Duration.Input | undefined
}

/**
 * Options of a TCP listener.
 *
 * @example
 * ```ts
 * import type { Listener } from "effect-asynchat"
 *
 * const local: Listener.TcpOptions = { host: "127.0.0.1", port: 0, backlog: 511, noDelay: true }
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface TcpOptions extends SocketOptions {
  /** Defaults to all interfaces, as with Node's `listen`. */
  readonly host?: string | undefined
  /** 0 (the default) lets the system choose; read it from `Listener.address`. */
  readonly port?: number | undefined
  /** The kernel's queue of connections not yet accepted; Node's default is 511. */
  readonly backlog?: number | undefined
  /** On an IPv6 address (`::`), IPv6 only: no IPv4 connections on the same port. */
  readonly ipv6Only?: boolean | undefined
  /**
   * Several listeners, in this process or others, may bind the same port (`SO_REUSEPORT`, Linux and the BSDs):
   * the kernel spreads new connections over them. Every one of them must ask for it.
   */
  readonly reusePort?: boolean | undefined
  /**
   * Every connection comes through a proxy that begins it with a PROXY header (v1 or v2), read before anything
   * else (before the TLS handshake on a TLS listener): the connection's `remoteAddress` is then the client's and
   * its `localAddress` the one the client connected to, as the header says (the socket's own for a `LOCAL` or
   * `UNKNOWN` header). A connection from a source not `trusted`, or whose header is missing, malformed, over-long
   * or not complete within `timeout`, fails with a `ChatError` (`ProxyUntrusted`, `ProxyHeaderInvalid`) that
   * closes it alone. See `ProxyProtocol`.
   */
  readonly proxyProtocol?: ProxyProtocol.Options | undefined
}

const inetOf = (host: string | undefined, port: number | undefined): Address => ({
  _tag: "Inet",
  host: host ?? "",
  port: port ?? 0
})

/**
 * Listens on a TCP port, scoped: the port is closed when the scope closes.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Chat, Listener } from "effect-asynchat"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const listener = yield* Listener.makeTcp({ host: "127.0.0.1", port: 0 })
 *   yield* Effect.log(`listening on ${Chat.formatAddress(listener.address)}`)
 * }))
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const makeTcp = (options: TcpOptions): Effect.Effect<ListenerShape, SocketServerError, Scope.Scope> =>
  makeNode(
    listenOptionsOf(options),
    tcpAddresses,
    () => Net.createServer({ ...nodeSocketOptions(options), allowHalfOpen: true, pauseOnConnect: true }),
    "connection",
    options.proxyProtocol
  )

/** Where and how a TCP (or TLS) listener listens, in Node's terms. */
const listenOptionsOf = (options: TcpOptions) => ({
  host: options.host,
  port: options.port ?? 0,
  backlog: options.backlog,
  ipv6Only: options.ipv6Only,
  reusePort: options.reusePort
})

const tcpAddresses = (conn: Net.Socket): Addresses => ({
  localAddress: inetOf(conn.localAddress, conn.localPort),
  remoteAddress: inetOf(conn.remoteAddress, conn.remotePort)
})

/**
 * Listens on a Unix socket path, scoped.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Listener } from "effect-asynchat"
 *
 * const program = Effect.scoped(Listener.makeUnix({ path: "/tmp/chat.sock" }))
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const makeUnix = (options: {
  readonly path: string
  readonly backlog?: number | undefined
}): Effect.Effect<ListenerShape, SocketServerError, Scope.Scope> =>
  makeNode(
    { path: options.path, backlog: options.backlog },
    () => ({
      localAddress: { _tag: "Unix", path: options.path },
      remoteAddress: { _tag: "Unix", path: options.path }
    }),
    () => Net.createServer({ allowHalfOpen: true, pauseOnConnect: true })
  )

/**
 * Options of a TLS listener: a TCP listener's, with the server's key and certificate (PEM) and what it asks of
 * clients.
 *
 * @example
 * ```ts
 * import * as Fs from "node:fs"
 * import type { Listener } from "effect-asynchat"
 *
 * const secure: Listener.TlsOptions = {
 *   port: 6380,
 *   key: Fs.readFileSync("server.key"),
 *   cert: Fs.readFileSync("server.crt"),
 *   ALPNProtocols: ["redis"]
 * }
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface TlsOptions extends TcpOptions, TlsServerOptions {
  /**
   * How long a client may take over its handshake before it is dropped (default 120 seconds, Node's): the
   * connection, and its idle timeout, begin once the handshake is done.
   */
  readonly handshakeTimeout?: Duration.Input | undefined
}

/**
 * Listens on a TCP port with TLS (`node:tls`), scoped. A connection is handed over once its handshake is done;
 * one whose handshake fails never is (it is logged at Debug, as a peer's reset is), and the server goes on.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import * as Fs from "node:fs"
 * import { Chat, Listener } from "effect-asynchat"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const listener = yield* Listener.makeTls({
 *     host: "127.0.0.1",
 *     key: Fs.readFileSync("server.key"),
 *     cert: Fs.readFileSync("server.crt")
 *   })
 *   yield* Effect.log(`listening with TLS on ${Chat.formatAddress(listener.address)}`)
 * }))
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const makeTls = (options: TlsOptions): Effect.Effect<ListenerShape, SocketServerError, Scope.Scope> =>
  makeNode(
    listenOptionsOf(options),
    tcpAddresses,
    () =>
      Tls.createServer(definedOnly({
        ...nodeSocketOptions(options),
        ...serverOptionsOf(options),
        allowHalfOpen: true,
        handshakeTimeout: options.handshakeTimeout === undefined
          ? undefined
          : Duration.toMillis(Duration.fromInputUnsafe(options.handshakeTimeout))
      })),
    "secureConnection",
    options.proxyProtocol
  )

/**
 * A `node:net` server of our own rather than `@effect/platform-node`'s `NodeSocketServer`, for three reasons:
 * - its connections are effect `Socket`s, read one pull (an effect, a fiber resumed) per read; ours are Node
 *   streams, whose every read reaches the connection in the stream's own 'data' callback, with no fiber between;
 * - a graceful shutdown stops accepting (`stopAccepting`) while open connections run on; its server closes
 *   only with its scope, with the connections' fibers;
 * - what it accepts is a `Link` any Duplex can be (a `tls.TLSSocket` included, so TLS needs nothing of it).
 */
const makeNode = (
  options: Net.ListenOptions & { readonly reusePort?: boolean | undefined },
  addresses: (conn: Net.Socket) => Addresses,
  // Half-open: a peer's FIN ends our input only; we still answer, then close. Paused until a connection reads
  // (a TLS socket cannot be: its handshake reads; it is handed over once that is done, its data held meanwhile).
  makeServer: () => Net.Server,
  connectionEvent: "connection" | "secureConnection" = "connection",
  proxyProtocol?: ProxyProtocol.Options | undefined
): Effect.Effect<ListenerShape, SocketServerError, Scope.Scope> =>
  Effect.gen(function*() {
    const proxy = proxyProtocol === undefined ? undefined : yield* Effect.try({
      try: () => readerOf(proxyProtocol),
      catch: (cause) => new SocketServer.SocketServerError({ reason: new ListenFailed({ cause }) })
    })
    const server = makeServer()
    // Accepted before `accept` is running: handed over when it starts, destroyed if it never does.
    const waiting = new Set<StreamLink>()
    let onConnection: ((link: StreamLink) => void) | undefined = undefined
    const handOver = (link: StreamLink) => {
      if (onConnection !== undefined) return onConnection(link)
      waiting.add(link)
      link.stream.once("close", () => waiting.delete(link))
    }
    // a failed TLS handshake: that peer is gone, nothing else to do; told at Debug while someone accepts
    let onHandshakeFailed: (cause: Error) => void = ignore
    // with a listener of ours, Node leaves the socket open: a client whose handshake failed or timed out is dropped
    server.on("tlsClientError", (cause: Error, socket: NodeStream.Duplex) => {
      socket.destroy()
      onHandshakeFailed(cause)
    })
    // an error before a connection's transport listens must not become an uncaught exception; the transport
    // sees the socket closed
    const accepted = (conn: Net.Socket, own: Addresses = addresses(conn), failure?: ChatError) => {
      conn.on("error", ignore)
      handOver(streamLinkOf(conn, own, failure))
    }
    // Sockets whose PROXY header is still coming: destroyed with the listener.
    const reading = new Set<Net.Socket>()
    if (proxy === undefined) server.on(connectionEvent, (conn: Net.Socket) => accepted(conn))
    else onProxied(server, connectionEvent, proxy, reading, accepted)
    yield* Effect.acquireRelease(
      Effect.callback<void, SocketServerError>((resume) => {
        const onError = (cause: Error) =>
          resume(
            Effect.fail(
              new SocketServer.SocketServerError({ reason: new ListenFailed({ cause }) })
            )
          )
        server.once("error", onError)
        server.listen(definedOnly(options), () => {
          server.off("error", onError)
          // a failed accept while nobody is accepting: the peer was refused, nothing else to do
          server.on("error", ignore)
          resume(Effect.void)
        })
      }),
      () =>
        Effect.callback<void>((resume) => {
          for (const link of waiting) link.stream.destroy()
          waiting.clear()
          for (const conn of reading) conn.destroy()
          reading.clear()
          if (!server.listening) return resume(Effect.void)
          server.close(() => resume(Effect.void))
        })
    )
    const bound = server.address()
    const address: Address = bound === null || typeof bound === "string"
      ? { _tag: "Unix", path: bound ?? "" }
      : { _tag: "Inet", host: bound.address, port: bound.port }
    return Listener.of({
      address,
      accept: (handle) =>
        Effect.withFiber((fiber) => {
          // an accept that fails (out of file descriptors) refuses that connection only: the server goes on
          const onError = (cause: Error) =>
            Effect.runForkWith(fiber.context)(Effect.logWarning(`accept failed: ${cause.message}`))
          server.on("error", onError)
          onHandshakeFailed = (cause) =>
            Effect.runForkWith(fiber.context)(Effect.logDebug(`TLS handshake failed: ${cause.message}`))
          onConnection = handle
          for (const link of waiting) handle(link)
          waiting.clear()
          return Effect.callback<never>(() =>
            Effect.sync(() => {
              onConnection = undefined
              onHandshakeFailed = ignore
              server.off("error", onError)
            })
          )
        }),
      stopAccepting: Effect.sync(() => {
        if (server.listening) server.close()
      })
    })
  })

/**
 * A listener's connections read for their PROXY header first. A plain one is handed over once it is read; on a
 * TLS listener, `tls.Server`'s own 'connection' listener (which starts the handshake) runs only then, and the
 * secure socket is handed over with the header's addresses, found by the socket's four-tuple (the TLS socket
 * reports its TCP socket's). A connection whose header fails is handed over with that failure, for its
 * connection to fail with: logged with an id and counted as any connection's failure.
 */
const onProxied = (
  server: Net.Server,
  connectionEvent: "connection" | "secureConnection",
  proxy: Reader,
  reading: Set<Net.Socket>,
  accepted: (conn: Net.Socket, own?: Addresses, failure?: ChatError) => void
): void => {
  const handshakes = connectionEvent === "secureConnection" ? server.listeners("connection") : []
  server.removeAllListeners("connection")
  const relayed = new Map<string, Addresses>()
  server.on("connection", (raw: Net.Socket) => {
    raw.on("error", ignore)
    const own = tcpAddresses(raw)
    reading.add(raw)
    readHeader(raw, proxy, own, (outcome) => {
      reading.delete(raw)
      if (outcome._tag === "Failed") return accepted(raw, own, outcome.error)
      if (handshakes.length === 0) return accepted(raw, outcome.addresses)
      const tuple = fourTupleOf(raw)
      relayed.set(tuple, outcome.addresses)
      raw.once("close", () => relayed.delete(tuple))
      for (const handshake of handshakes) handshake.call(server, raw)
    })
  })
  if (connectionEvent === "secureConnection") {
    server.on("secureConnection", (conn: Net.Socket) => {
      const tuple = fourTupleOf(conn)
      const header = relayed.get(tuple)
      relayed.delete(tuple)
      accepted(conn, header)
    })
  }
}

const fourTupleOf = (conn: Net.Socket): string =>
  `${conn.remoteAddress} ${conn.remotePort} ${conn.localAddress} ${conn.localPort}`

/**
 * A TCP listener as a Layer.
 *
 * @example
 * ```ts
 * import { Listener } from "effect-asynchat"
 *
 * const OnPort7000 = Listener.layerTcp({ host: "127.0.0.1", port: 7000 })
 * ```
 *
 * @category layers
 * @since 0.1.0
 */
export const layerTcp = (options: TcpOptions): Layer.Layer<Listener, SocketServerError> =>
  Layer.effect(Listener, makeTcp(options))

/**
 * A TLS listener as a Layer.
 *
 * @example
 * ```ts
 * import * as Fs from "node:fs"
 * import { Listener } from "effect-asynchat"
 *
 * const Secure = Listener.layerTls({ port: 6380, key: Fs.readFileSync("server.key"), cert: Fs.readFileSync("server.crt") })
 * ```
 *
 * @category layers
 * @since 0.1.0
 */
export const layerTls = (options: TlsOptions): Layer.Layer<Listener, SocketServerError> =>
  Layer.effect(Listener, makeTls(options))

/**
 * A Unix socket listener as a Layer.
 *
 * @example
 * ```ts
 * import { Listener } from "effect-asynchat"
 *
 * const Local = Listener.layerUnix({ path: "/tmp/chat.sock" })
 * ```
 *
 * @category layers
 * @since 0.1.0
 */
export const layerUnix = (options: {
  readonly path: string
  readonly backlog?: number | undefined
}): Layer.Layer<Listener, SocketServerError> => Layer.effect(Listener, makeUnix(options))
