/**
 * The PROXY header of a socket a listener accepted, read before a connection (or the listener's TLS) takes the
 * socket over: in the socket's own 'data' callbacks, under one timer, with no fiber. What follows the header in
 * the same read is put back into the socket (`unshift`), for whoever reads it next. At most a header's bound plus
 * one read is ever buffered: `ProxyProtocol.decode` fails past the bound instead of asking for more.
 */
import { Duration } from "effect"
import { Buffer } from "node:buffer"
import * as Net from "node:net"
import { type Address, formatAddress } from "../Chat.ts"
import * as ChatError from "../ChatError.ts"
import * as ProxyProtocol from "../ProxyProtocol.ts"
import { readFailed } from "./transport.ts"

/** A listener's PROXY protocol, ready to use: who is trusted, and how long a header may take. */
export interface Reader {
  readonly trusted: Net.BlockList
  readonly timeout: Duration.Duration
}

/** `options` made ready; throws, saying which, on an entry of `trusted` that is no address or CIDR block. */
export const readerOf = (options: ProxyProtocol.Options): Reader => {
  const trusted = new Net.BlockList()
  for (const entry of options.trusted) {
    const [address, prefix, ...extra] = entry.split("/")
    const family = Net.isIPv4(address) ? "ipv4" : Net.isIPv6(address) ? "ipv6" : undefined
    const bits = prefix === undefined ? undefined : Number(prefix)
    const max = family === "ipv4" ? 32 : 128
    if (
      family === undefined || extra.length > 0 ||
      (bits !== undefined && (!/^\d{1,3}$/.test(prefix) || bits > max))
    ) {
      throw new Error(`proxyProtocol.trusted: ${JSON.stringify(entry)} is not an address or a CIDR block`)
    }
    if (bits === undefined) trusted.addAddress(address, family)
    else trusted.addSubnet(address, bits, family)
  }
  return { trusted, timeout: Duration.fromInputUnsafe(options.timeout ?? "5 seconds") }
}

/** The addresses of a connection: the socket's own, or what its header says. */
export interface Addresses {
  readonly localAddress: Address
  readonly remoteAddress: Address
}

/** How reading a header ended. */
export type Outcome =
  | { readonly _tag: "Read"; readonly addresses: Addresses }
  | { readonly _tag: "Failed"; readonly error: ChatError.ChatError }

const invalid = (detail: string): Outcome => ({
  _tag: "Failed",
  error: new ChatError.ChatError({ reason: new ChatError.ProxyHeaderInvalid({ detail }) })
})

/**
 * Reads `socket`'s header (the socket's own addresses are `own`), then tells `done` once, the socket paused: its
 * addresses, or why it cannot be served. A socket from an untrusted source is refused without a read. Told
 * nothing when the socket is destroyed first (by its listener, closing).
 */
export const readHeader = (
  socket: Net.Socket,
  reader: Reader,
  own: Addresses,
  done: (outcome: Outcome) => void
): void => {
  const source = socket.remoteAddress
  // No address: the peer was gone before the accept (a health check that sends its header and resets at once).
  if (source === undefined) {
    socket.pause()
    done({ _tag: "Failed", error: readFailed(new Error("the peer was gone before its connection was accepted")) })
    return
  }
  if (!reader.trusted.check(source, Net.isIPv4(source) ? "ipv4" : "ipv6")) {
    socket.pause()
    done({
      _tag: "Failed",
      error: new ChatError.ChatError({
        reason: new ChatError.ProxyUntrusted({ peer: formatAddress(own.remoteAddress) })
      })
    })
    return
  }
  let buffered: Buffer = Buffer.alloc(0)
  const finish = (outcome: Outcome) => {
    cleanup()
    socket.pause()
    done(outcome)
  }
  const onData = (chunk: Buffer) => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk])
    const decoded = ProxyProtocol.decode(buffered)
    if (decoded._tag === "NeedMore") return
    if (decoded._tag === "Invalid") return finish(invalid(decoded.message))
    // paused first: what the header's read brought after it waits in the socket, with the next reads
    socket.pause()
    if (decoded.length < buffered.length) socket.unshift(buffered.subarray(decoded.length))
    const header = decoded.header
    finish({
      _tag: "Read",
      addresses: header.source === undefined || header.destination === undefined
        ? own
        : { localAddress: header.destination, remoteAddress: header.source }
    })
  }
  // a peer that hangs up without a byte (a port scan, a plain TCP health check) is routine, as a reset is
  const onEnd = () =>
    finish(
      buffered.length === 0
        ? { _tag: "Failed", error: readFailed(new Error("the peer closed before sending a PROXY header")) }
        : invalid(`the peer closed after ${buffered.length} bytes of an incomplete header`)
    )
  const onError = (cause: Error) => finish({ _tag: "Failed", error: readFailed(cause) })
  const onClose = () => cleanup()
  const timer = setTimeout(
    () => finish(invalid(`none complete within ${Duration.format(reader.timeout)}`)),
    Duration.toMillis(reader.timeout)
  )
  const cleanup = () => {
    clearTimeout(timer)
    socket.off("data", onData)
    socket.off("end", onEnd)
    socket.off("error", onError)
    socket.off("close", onClose)
  }
  socket.on("data", onData)
  socket.on("end", onEnd)
  socket.on("error", onError)
  socket.on("close", onClose)
  socket.resume()
}
