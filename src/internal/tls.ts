/**
 * TLS in `node:tls`'s terms, for listeners, connectors and a connection's upgrade in place (STARTTLS): the
 * options as Node takes them, what a handshake negotiated, and the handshake of a stream taken over.
 */
import { Effect } from "effect"
import { Buffer } from "node:buffer"
import type * as NodeStream from "node:stream"
import * as Tls from "node:tls"
import type { StartTls, TlsClientOptions, TlsInfo, TlsServerOptions } from "../Chat.ts"
import * as ChatError from "../ChatError.ts"
import { definedOnly, handshakeFailed } from "./transport.ts"

/** A PEM given as text or bytes, as node:tls takes it. */
const pemOf = (pem: string | Uint8Array): string | Buffer => typeof pem === "string" ? pem : Buffer.from(pem)

/** One PEM or several, as node:tls takes them. */
const pemsOf = (pems: string | Uint8Array | ReadonlyArray<string | Uint8Array>): Array<string | Buffer> =>
  (typeof pems === "string" || pems instanceof Uint8Array ? [pems] : [...pems]).map(pemOf)

const alpnOf = (protocols: ReadonlyArray<string> | undefined): Array<string> | undefined =>
  protocols === undefined ? undefined : [...protocols]

/** A server's TLS as `tls.createServer` takes it. A client's certificate is the handler's to judge by default. */
export const serverOptionsOf = (options: TlsServerOptions): Tls.TlsOptions =>
  definedOnly({
    key: pemOf(options.key),
    cert: pemOf(options.cert),
    ca: options.ca === undefined ? undefined : pemsOf(options.ca),
    requestCert: options.requestCert,
    rejectUnauthorized: options.rejectUnauthorized ?? false,
    ALPNProtocols: alpnOf(options.ALPNProtocols)
  })

/** A client's TLS as `tls.connect` takes it. */
export const clientOptionsOf = (options: TlsClientOptions): Tls.ConnectionOptions =>
  definedOnly({
    servername: options.servername,
    ca: options.ca === undefined ? undefined : pemsOf(options.ca),
    rejectUnauthorized: options.rejectUnauthorized,
    ALPNProtocols: alpnOf(options.ALPNProtocols),
    cert: options.cert === undefined ? undefined : pemOf(options.cert),
    key: options.key === undefined ? undefined : pemOf(options.key)
  })

/** What a TLS socket's handshake negotiated. */
export const infoOf = (socket: Tls.TLSSocket): TlsInfo => {
  const certificate = socket.getPeerCertificate()
  return {
    alpnProtocol: typeof socket.alpnProtocol === "string" ? socket.alpnProtocol : undefined,
    // an empty object when the peer presented none
    peerCertificate: certificate !== null && Object.keys(certificate).length > 0 ? certificate : undefined,
    authorized: socket.authorized
  }
}

/**
 * A server's secure context, made once for its options: parsing a key and a certificate costs more than a
 * handshake's share of a request, and an SMTP server upgrades every connection with the same options.
 */
const contexts = new WeakMap<TlsServerOptions, Tls.SecureContext>()
const contextOf = (options: TlsServerOptions): Tls.SecureContext => {
  let context = contexts.get(options)
  if (context === undefined) {
    context = Tls.createSecureContext(serverOptionsOf(options))
    contexts.set(options, context)
  }
  return context
}

/**
 * `stream` taken over by TLS, on the side `options` says; its handshake begins at once, reading what `stream`
 * has buffered first. The new socket owns `stream`: destroying it destroys `stream`.
 */
export const wrap = (stream: NodeStream.Duplex, options: StartTls): Tls.TLSSocket => {
  if (options.side === "client") return Tls.connect({ ...clientOptionsOf(options), socket: stream })
  return new Tls.TLSSocket(
    stream,
    definedOnly({
      isServer: true,
      secureContext: contextOf(options),
      requestCert: options.requestCert,
      rejectUnauthorized: options.rejectUnauthorized ?? false,
      ALPNProtocols: alpnOf(options.ALPNProtocols)
    })
  )
}

/** What `tls.Server` does with a server socket's handshake, and a bare socket leaves to its owner. */
interface ServerSocket {
  authorized: boolean
  authorizationError?: string
  readonly _handle?: { readonly verifyError?: () => (Error & { readonly code?: string }) | null } | null
  /** Hands the socket's TLS errors after the handshake to its 'error' listeners; until then Node drops them. */
  readonly _releaseControl?: () => boolean
}

/**
 * Judges the client's certificate as `tls.Server` does once a server socket's handshake is done (a bare socket
 * leaves `authorized` false whatever the client presented), and takes control of the socket, so that its later
 * TLS errors (a bad record, a renegotiation past Node's limit) reach the transport instead of being dropped.
 * Returns the refusal, when a required certificate is missing or not trusted.
 */
const serverSecured = (socket: Tls.TLSSocket, options: TlsServerOptions): Error | undefined => {
  const server = socket as unknown as ServerSocket
  let refused: Error | undefined = undefined
  if (options.requestCert === true) {
    const error = server._handle?.verifyError?.() ?? null
    if (error === null) {
      server.authorized = true
    } else {
      server.authorizationError = error.code ?? error.message
      if (options.rejectUnauthorized === true) refused = error
    }
  }
  server._releaseControl?.()
  return refused
}

/**
 * The handshake of a socket `wrap` made: what it negotiated, or why it failed (an error, or the socket closed
 * first). A server that refuses unauthorized clients refuses here what `tls.Server` would: a bare socket
 * leaves that to its owner.
 */
export const handshake = (socket: Tls.TLSSocket, options: StartTls): Effect.Effect<TlsInfo, ChatError.ChatError> =>
  Effect.callback<TlsInfo, ChatError.ChatError>((resume) => {
    const event = options.side === "server" ? "secure" : "secureConnect"
    const cleanup = () => {
      socket.off(event, onSecure)
      socket.off("error", onError)
      socket.off("close", onClose)
    }
    const onSecure = () => {
      cleanup()
      const refused = options.side === "server" ? serverSecured(socket, options) : undefined
      if (refused !== undefined) {
        socket.destroy()
        return resume(Effect.fail(handshakeFailed(refused)))
      }
      resume(Effect.succeed(infoOf(socket)))
    }
    const onError = (cause: Error) => {
      cleanup()
      resume(Effect.fail(handshakeFailed(cause)))
    }
    const onClose = () => {
      cleanup()
      resume(Effect.fail(handshakeFailed(new Error("the peer closed the connection during the handshake"))))
    }
    socket.on(event, onSecure)
    socket.on("error", onError)
    socket.on("close", onClose)
    return Effect.sync(cleanup)
  })
