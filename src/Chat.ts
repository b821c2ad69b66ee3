/**
 * The connection handle a handler talks through: asynchat's `async_chat` as an Effect service.
 *
 * Output goes through one FIFO of producers, drained with backpressure: {@link push} queues bytes or strings,
 * {@link pushStream} queues a Stream (asynchat's `push_with_producer`), {@link closeWhenDone} closes after
 * everything queued before it is written, {@link endOutput} ends the output there (a half-close) and reads
 * on. Order is strict across all of them. Every operation of the handle has an accessor here. Changing the
 * terminator as frames arrive, asynchat's `set_terminator`, is for `AsyncChat.make` connections: see `AsyncChat`.
 *
 * @since 0.1.0
 */
import { Context, type Effect, type Stream } from "effect"
import type * as NodeTls from "node:tls"
import type * as ChatError from "./ChatError.ts"

/**
 * Where a connection's end is: an IP address and port, a Unix socket path, or a named in-memory or pipe end.
 *
 * @example
 * ```ts
 * import { Chat } from "effect-asynchat"
 *
 * const peer: Chat.Address = { _tag: "Inet", host: "127.0.0.1", port: 54321 }
 * Chat.formatAddress(peer) // "127.0.0.1:54321"
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export type Address =
  | { readonly _tag: "Inet"; readonly host: string; readonly port: number }
  | { readonly _tag: "Unix"; readonly path: string }
  | { readonly _tag: "Memory"; readonly name: string }
  | { readonly _tag: "Pipe"; readonly name: string }

/**
 * Renders an address for logs: `127.0.0.1:80`, `[::1]:80`, `unix:/tmp/s.sock`, `memory:client-1`, `pipe:stdio`.
 *
 * @example
 * ```ts
 * import { Chat } from "effect-asynchat"
 *
 * Chat.formatAddress({ _tag: "Inet", host: "::1", port: 80 }) // "[::1]:80"
 * ```
 *
 * @category formatting
 * @since 0.1.0
 */
export const formatAddress = (address: Address): string => {
  switch (address._tag) {
    case "Inet":
      return address.host.includes(":") ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`
    case "Unix":
      return `unix:${address.path}`
    case "Memory":
      return `memory:${address.name}`
    case "Pipe":
      return `pipe:${address.name}`
  }
}

/**
 * What a connection over TLS negotiated: the protocol chosen by ALPN, and the peer's certificate when one was
 * asked for (`requestCert` on a listener; a server always presents one to a client).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Chat } from "effect-asynchat"
 *
 * const whoIsIt = Effect.map(Chat.Chat, (chat) => chat.tls?.peerCertificate?.subject.CN ?? "anonymous")
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface TlsInfo {
  /** The protocol both sides agreed on by ALPN (`"h2"`, `"smtp"`...), or undefined when none was. */
  readonly alpnProtocol: string | undefined
  /** The peer's certificate, when it presented one. */
  readonly peerCertificate: NodeTls.PeerCertificate | undefined
  /** True when the peer's certificate is signed by a trusted authority (`ca`). */
  readonly authorized: boolean
}

/**
 * The TLS of a server: its key and certificate, and what it asks of clients. A listener's (`Listener.makeTls`)
 * and a connection's upgrade as the server (`chat.startTls({ side: "server", ... })`).
 *
 * @example
 * ```ts
 * import * as Fs from "node:fs"
 * import type { Chat } from "effect-asynchat"
 *
 * const tls: Chat.TlsServerOptions = { key: Fs.readFileSync("server.key"), cert: Fs.readFileSync("server.crt") }
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface TlsServerOptions {
  /** The server's private key, PEM. */
  readonly key: string | Uint8Array
  /** The server's certificate chain, PEM. */
  readonly cert: string | Uint8Array
  /** Authorities trusted for client certificates (default Node's bundled roots). */
  readonly ca?: string | Uint8Array | ReadonlyArray<string | Uint8Array> | undefined
  /** Asks each client for a certificate, which its connection's `chat.tls.peerCertificate` then shows. */
  readonly requestCert?: boolean | undefined
  /**
   * With `requestCert`, refuses a client whose certificate is missing or not signed by `ca` (default false: the
   * handler sees `chat.tls.authorized` and decides).
   */
  readonly rejectUnauthorized?: boolean | undefined
  /** The protocols offered by ALPN, in order of preference; the agreed one is `chat.tls.alpnProtocol`. */
  readonly ALPNProtocols?: ReadonlyArray<string> | undefined
}

/**
 * The TLS of a client: what it trusts and what it presents. A connector's (`ChatClient.tls`) and a
 * connection's upgrade as the client (`chat.startTls({ side: "client", ... })`).
 *
 * @example
 * ```ts
 * import * as Fs from "node:fs"
 * import type { Chat } from "effect-asynchat"
 *
 * const tls: Chat.TlsClientOptions = { ca: Fs.readFileSync("ca.crt"), servername: "mail.internal" }
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface TlsClientOptions {
  /** Authorities trusted for the server's certificate (default Node's bundled roots), PEM. */
  readonly ca?: string | Uint8Array | ReadonlyArray<string | Uint8Array> | undefined
  /**
   * The name the server's certificate must carry, and sent by SNI (a connector's default is its `host`, unless
   * that is an IP address; an upgrade's is none: no SNI, and the certificate is checked against "localhost").
   */
  readonly servername?: string | undefined
  /** False accepts any certificate: for tests only (default true). */
  readonly rejectUnauthorized?: boolean | undefined
  /** The protocols offered by ALPN, in order of preference; the agreed one is `chat.tls.alpnProtocol`. */
  readonly ALPNProtocols?: ReadonlyArray<string> | undefined
  /** A client certificate and its key, PEM, for a server that asks for one. */
  readonly cert?: string | Uint8Array | undefined
  readonly key?: string | Uint8Array | undefined
}

/**
 * The TLS a plaintext connection upgrades to with `chat.startTls` (STARTTLS): the side it takes in the
 * handshake, as the server or as the client, with that side's options.
 *
 * @example
 * ```ts
 * import * as Fs from "node:fs"
 * import type { Chat } from "effect-asynchat"
 *
 * const asServer: Chat.StartTls = { side: "server", key: Fs.readFileSync("server.key"), cert: Fs.readFileSync("server.crt") }
 * const asClient: Chat.StartTls = { side: "client", ca: Fs.readFileSync("ca.crt"), servername: "mail.internal" }
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export type StartTls =
  | ({ readonly side: "server" } & TlsServerOptions)
  | ({ readonly side: "client" } & TlsClientOptions)

/**
 * What a handler can do with its connection.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Chat } from "effect-asynchat"
 *
 * const greet = Effect.gen(function*() {
 *   const chat = yield* Chat.Chat
 *   yield* chat.push(`hello #${chat.id} from ${Chat.formatAddress(chat.localAddress)}\r\n`)
 * })
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface ChatShape {
  /** Unique among the connections of one server (or one client runtime), from 1. */
  readonly id: number
  readonly localAddress: Address
  readonly remoteAddress: Address
  /** What the connection's TLS negotiated; undefined when it is not over TLS. */
  readonly tls: TlsInfo | undefined
  /**
   * Queues bytes or strings (UTF-8) in order. Suspends while the output queue is over its high-water mark;
   * after the connection closed, the data is dropped.
   */
  readonly push: (...data: ReadonlyArray<Uint8Array | string>) => Effect.Effect<void>
  /**
   * Queues bytes or strings without waiting, past the high-water mark up to the connection's `outputLimit`:
   * false, with nothing queued, when that much is already waiting (the peer is not keeping up). For fan-out,
   * where one slow reader must not hold up the others.
   */
  readonly offer: (...data: ReadonlyArray<Uint8Array | string>) => Effect.Effect<boolean>
  /**
   * Queues a producer: its bytes are written after everything queued before, and before anything queued after.
   * A failing producer closes the connection with `ChatError` / `ProducerFailed`.
   */
  readonly pushStream: <E, R>(stream: Stream.Stream<Uint8Array, E, R>) => Effect.Effect<void, never, R>
  /** Closes the connection once everything queued before this call has been written. */
  readonly closeWhenDone: Effect.Effect<void>
  /**
   * Ends the output once everything queued before this call has been written (a half-close: the peer reads
   * our FIN), while the input goes on: a peer that reads to the end before it answers (`sort`, an HTTP/1.0
   * body sent until EOF) can then answer. Later pushes are dropped. The connection closes when its handler
   * returns, as ever; a peer that closes its side too ends the input.
   */
  readonly endOutput: Effect.Effect<void>
  /** Closes the connection now, dropping queued output. */
  readonly close: Effect.Effect<void>
  /**
   * Upgrades the connection to TLS in place (STARTTLS), after the frame that asked for it, and succeeds with
   * what the handshake negotiated (`tls` says it from then on).
   *
   * - The input not handed to the handler yet (the frames after the one that asked, the bytes after them) is
   *   discarded, never read as if it came over TLS (RFC 3207 section 4.2): a peer that pipelines plaintext
   *   after STARTTLS loses what had arrived, and what arrives later goes to the handshake, which fails.
   * - What is queued before the call (the `220 Ready to start TLS`) goes out in plaintext first; what is
   *   queued after goes over TLS.
   * - The terminator or machine state, the timeouts and the metrics carry over; the idle timeout bounds the
   *   handshake.
   * - A failed handshake fails with `ChatError` / `HandshakeFailed`, and the connection is closed; so does a
   *   connection already over TLS, one whose input has ended or whose output is closing, but those stay open.
   * - Interrupting the wait does not undo the upgrade: once asked for, it goes on in order with the output.
   */
  readonly startTls: (options: StartTls) => Effect.Effect<TlsInfo, ChatError.ChatError>
}

/**
 * The current connection, provided to every handler.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Chat } from "effect-asynchat"
 *
 * const whoAmI = Effect.map(Chat.Chat, (chat) => Chat.formatAddress(chat.remoteAddress))
 * ```
 *
 * @category services
 * @since 0.1.0
 */
export class Chat extends Context.Service<Chat, ChatShape>()("effect-asynchat/Chat") {}

/**
 * Queues bytes or strings on the current connection.
 *
 * @example
 * ```ts
 * import { Chat } from "effect-asynchat"
 *
 * const pong = Chat.push("+PONG\r\n")
 * ```
 *
 * @category accessors
 * @since 0.1.0
 */
export const push = (...data: ReadonlyArray<Uint8Array | string>): Effect.Effect<void, never, Chat> =>
  Chat.use((chat) => chat.push(...data))

/**
 * Queues a producer on the current connection.
 *
 * @example
 * ```ts
 * import { Stream } from "effect"
 * import { Chat } from "effect-asynchat"
 *
 * const body = Chat.pushStream(Stream.make(new TextEncoder().encode("chunk")))
 * ```
 *
 * @category accessors
 * @since 0.1.0
 */
export const pushStream = <E, R>(stream: Stream.Stream<Uint8Array, E, R>): Effect.Effect<void, never, Chat | R> =>
  Chat.use((chat) => chat.pushStream(stream))

/**
 * Closes the current connection after everything queued so far is written.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Chat } from "effect-asynchat"
 *
 * const answerAndHangUp = Chat.push("bye\r\n").pipe(Effect.andThen(Chat.closeWhenDone))
 * ```
 *
 * @category accessors
 * @since 0.1.0
 */
export const closeWhenDone: Effect.Effect<void, never, Chat> = Chat.use((chat) => chat.closeWhenDone)

/**
 * Ends the current connection's output after everything queued so far (a half-close), reading on.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Chat } from "effect-asynchat"
 *
 * const askAndListen = Chat.push("all my input\n").pipe(Effect.andThen(Chat.endOutput))
 * ```
 *
 * @category accessors
 * @since 0.1.0
 */
export const endOutput: Effect.Effect<void, never, Chat> = Chat.use((chat) => chat.endOutput)

/**
 * Queues bytes or strings on the current connection without waiting: false, with nothing queued, when its
 * `outputLimit` is reached.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Chat } from "effect-asynchat"
 *
 * const notice = Effect.flatMap(Chat.offer("* news\r\n"), (queued) => queued ? Effect.void : Chat.close)
 * ```
 *
 * @category accessors
 * @since 0.1.0
 */
export const offer = (...data: ReadonlyArray<Uint8Array | string>): Effect.Effect<boolean, never, Chat> =>
  Chat.use((chat) => chat.offer(...data))

/**
 * Closes the current connection now, dropping what is queued: to answer and hang up, use `closeWhenDone`.
 *
 * @example
 * ```ts
 * import { Chat } from "effect-asynchat"
 *
 * const hangUp = Chat.close
 * ```
 *
 * @category accessors
 * @since 0.1.0
 */
export const close: Effect.Effect<void, never, Chat> = Chat.use((chat) => chat.close)

/**
 * Upgrades the current connection to TLS in place (STARTTLS): see `ChatShape.startTls`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import * as Fs from "node:fs"
 * import { Chat } from "effect-asynchat"
 *
 * const tls: Chat.StartTls = { side: "server", key: Fs.readFileSync("server.key"), cert: Fs.readFileSync("server.crt") }
 * const starttls = Chat.push("220 Ready to start TLS\r\n").pipe(Effect.andThen(Chat.startTls(tls)))
 * ```
 *
 * @category accessors
 * @since 0.1.0
 */
export const startTls = (options: StartTls): Effect.Effect<TlsInfo, ChatError.ChatError, Chat> =>
  Chat.use((chat) => chat.startTls(options))
