/**
 * The PROXY protocol, versions 1 and 2 (HAProxy's proxy-protocol.txt): the header a proxy in front of a server
 * (HAProxy's `send-proxy`, nginx's `proxy_protocol`, cloud load balancers) sends before the client's first byte,
 * saying whom it relays. A TCP or TLS listener given `proxyProtocol` reads it from every connection before
 * anything else (before a TLS ClientHello too), and the connection's `remoteAddress` is then the client's,
 * its `localAddress` where the client connected on the proxy. This module holds those options and the decoder.
 *
 * @since 0.1.0
 */
import type { Duration } from "effect"
import { Buffer } from "node:buffer"
import * as Net from "node:net"
import type { Address } from "./Chat.ts"

/**
 * A listener's PROXY protocol: who may send a header, and how long it may take.
 *
 * Every connection must come from a `trusted` source and begin with a header: one from any other source is
 * refused (`ChatError` / `ProxyUntrusted`) before a byte of it is read, since the spec says a receiver must never
 * take a header from an untrusted source (a client that connects directly could otherwise name any address), nor
 * guess whether one is present. A missing, malformed, over-long or late header is a `ProxyHeaderInvalid`. Either
 * closes that connection only, logged with its id and peer (the proxy's address).
 *
 * @example
 * ```ts
 * import type { ProxyProtocol } from "effect-asynchat"
 *
 * const behindHaproxy: ProxyProtocol.Options = { trusted: ["127.0.0.1", "10.0.0.0/8", "fd00::/8"], timeout: "3 seconds" }
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Options {
  /** The proxies: addresses (`"10.0.0.5"`, `"::1"`) or CIDR blocks (`"10.0.0.0/8"`, `"fd00::/8"`). */
  readonly trusted: ReadonlyArray<string>
  /** How long a connection may take to send its whole header, from its accept (default 5 seconds). */
  readonly timeout?: Duration.Input | undefined
}

/**
 * A decoded header. `source` and `destination` are undefined when the proxy says nothing of the client (a v2
 * `LOCAL` command, its health checks; v1 `UNKNOWN`; v2 `UNSPEC`): the socket's own addresses stand then.
 *
 * @example
 * ```ts
 * import type { ProxyProtocol } from "effect-asynchat"
 *
 * const relayed = (header: ProxyProtocol.Header) => header.command === "PROXY" && header.source !== undefined
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Header {
  readonly version: 1 | 2
  readonly command: "PROXY" | "LOCAL"
  /** The client. */
  readonly source: Address | undefined
  /** Where the client connected, on the proxy. */
  readonly destination: Address | undefined
}

/**
 * What `decode` made of the bytes a connection sent first: a header and its length (the bytes after it are the
 * protocol's), not enough bytes yet, or why they are no header.
 *
 * @example
 * ```ts
 * import type { ProxyProtocol } from "effect-asynchat"
 *
 * const done = (decoded: ProxyProtocol.Decoded) => decoded._tag !== "NeedMore"
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export type Decoded =
  | { readonly _tag: "NeedMore" }
  | { readonly _tag: "Header"; readonly header: Header; readonly length: number }
  | { readonly _tag: "Invalid"; readonly message: string }

/**
 * The longest v1 header, its CRLF included (the spec's bound).
 *
 * @example
 * ```ts
 * import { ProxyProtocol } from "effect-asynchat"
 *
 * ProxyProtocol.maxV1Length // 107
 * ```
 *
 * @category constants
 * @since 0.1.0
 */
export const maxV1Length = 107

/**
 * The longest v2 header taken: its 16 fixed bytes and 4 KiB of addresses and TLVs. The format allows 64 KiB;
 * what proxies send (addresses, a few TLVs: ALPN, SNI, a TLS summary, a cloud's endpoint id) is far less, and a
 * header is buffered whole before it is decoded.
 *
 * @example
 * ```ts
 * import { ProxyProtocol } from "effect-asynchat"
 *
 * ProxyProtocol.maxV2Length // 4112
 * ```
 *
 * @category constants
 * @since 0.1.0
 */
export const maxV2Length = 16 + 4096

const V1_PREFIX = Buffer.from("PROXY ", "latin1")
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])
const needMore: Decoded = { _tag: "NeedMore" }
const invalid = (message: string): Decoded => ({ _tag: "Invalid", message })
const found = (header: Header, length: number): Decoded => ({ _tag: "Header", header, length })

/** Whether `bytes` begin as `prefix` does, as far as they go. */
const startsAs = (bytes: Uint8Array, prefix: Uint8Array): boolean => {
  const n = Math.min(bytes.length, prefix.length)
  for (let i = 0; i < n; i++) if (bytes[i] !== prefix[i]) return false
  return true
}

/** The first bytes of what came instead of a header, for the message: `"GET / HTTP/1.1\r\n"`. */
const shown = (bytes: Uint8Array): string =>
  JSON.stringify(Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(bytes.length, 16)).toString("latin1"))

/**
 * Decodes the header at the start of `bytes`, the first bytes of a connection (all of them so far): call it again
 * with more when it says `NeedMore`. It fails as soon as the bytes cannot begin a header, and never needs more
 * than `maxV1Length` or `maxV2Length` bytes.
 *
 * @example
 * ```ts
 * import { ProxyProtocol } from "effect-asynchat"
 *
 * const decoded = ProxyProtocol.decode(new TextEncoder().encode("PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\nPING"))
 * // { _tag: "Header", length: 43, header: { version: 1, command: "PROXY",
 * //   source: { _tag: "Inet", host: "203.0.113.7", port: 51000 }, destination: { ..., port: 443 } } }
 * ```
 *
 * @category decoding
 * @since 0.1.0
 */
export const decode = (bytes: Uint8Array): Decoded => {
  if (bytes.length === 0) return needMore
  if (startsAs(bytes, V2_SIGNATURE)) return decodeV2(bytes)
  if (startsAs(bytes, V1_PREFIX)) return decodeV1(bytes)
  return invalid(`no PROXY header: the connection began with ${shown(bytes)}`)
}

const decodeV1 = (bytes: Uint8Array): Decoded => {
  const limit = Math.min(bytes.length, maxV1Length)
  let end = -1
  for (let i = V1_PREFIX.length; i < limit; i++) {
    if (bytes[i] === 0x0a) {
      end = i
      break
    }
  }
  if (end < 0) {
    return bytes.length >= maxV1Length
      ? invalid(`PROXY v1 header longer than ${maxV1Length} bytes`)
      : needMore
  }
  if (bytes[end - 1] !== 0x0d) return invalid("PROXY v1 header does not end with CRLF")
  const line = Buffer.from(bytes.buffer, bytes.byteOffset, end - 1).toString("latin1")
  const fields = line.split(" ")
  const length = end + 1
  // "PROXY UNKNOWN", and whatever follows it, which the receiver must ignore
  if (fields[1] === "UNKNOWN") {
    return found({ version: 1, command: "PROXY", source: undefined, destination: undefined }, length)
  }
  const family = fields[1] === "TCP4" ? 4 : fields[1] === "TCP6" ? 6 : 0
  if (family === 0) return invalid(`PROXY v1 header with an unknown protocol: ${JSON.stringify(line)}`)
  if (fields.length !== 6) {
    return invalid(`PROXY v1 header that is not "PROXY ${fields[1]} src dst sport dport": ${JSON.stringify(line)}`)
  }
  const [, , src, dst, sport, dport] = fields
  const source = inetOf(src, sport, family)
  const destination = inetOf(dst, dport, family)
  if (source === undefined || destination === undefined) {
    return invalid(`PROXY v1 header with an invalid address or port: ${JSON.stringify(line)}`)
  }
  return found({ version: 1, command: "PROXY", source, destination }, length)
}

/** A v1 address and port, checked, as an `Inet` address (IPv6 in its canonical form); undefined if invalid. */
const inetOf = (host: string, port: string, family: 4 | 6): Address | undefined => {
  if (!/^(?:0|[1-9]\d{0,4})$/.test(port) || Number(port) > 65535) return undefined
  if (family === 4) return Net.isIPv4(host) ? { _tag: "Inet", host, port: Number(port) } : undefined
  return Net.isIPv6(host) ? { _tag: "Inet", host: canonicalIPv6(host), port: Number(port) } : undefined
}

/** IPv6 as Node writes a socket's address: `::1`, `::ffff:127.0.0.1`. */
const canonicalIPv6 = (host: string): string => new Net.SocketAddress({ address: host, family: "ipv6" }).address

const u16 = (bytes: Uint8Array, at: number): number => (bytes[at] << 8) | bytes[at + 1]

const decodeV2 = (bytes: Uint8Array): Decoded => {
  if (bytes.length < 16) return needMore
  const version = bytes[12] >> 4
  const command = bytes[12] & 0x0f
  if (version !== 2) return invalid(`PROXY v2 signature with version ${version}`)
  if (command > 1) return invalid(`PROXY v2 header with an unknown command ${command}`)
  const length = 16 + u16(bytes, 14)
  if (length > maxV2Length) return invalid(`PROXY v2 header of ${length} bytes, over the ${maxV2Length} allowed`)
  if (bytes.length < length) return needMore
  // LOCAL: the proxy's own connection; the block (and its family) is discarded, the socket's addresses stand
  if (command === 0) return found({ version: 2, command: "LOCAL", source: undefined, destination: undefined }, length)
  const family = bytes[13] >> 4
  const transport = bytes[13] & 0x0f
  if (family === 0) return found({ version: 2, command: "PROXY", source: undefined, destination: undefined }, length)
  if (transport !== 1) {
    return invalid(`PROXY v2 header for ${transport === 2 ? "a datagram" : `transport ${transport}`}, not a stream`)
  }
  const needs = family === 1 ? 12 : family === 2 ? 36 : family === 3 ? 216 : 0
  if (needs === 0) return invalid(`PROXY v2 header with an unknown address family ${family}`)
  if (length - 16 < needs) {
    return invalid(`PROXY v2 header with ${length - 16} bytes of addresses, fewer than its family's ${needs}`)
  }
  const header = (source: Address, destination: Address): Decoded =>
    found({ version: 2, command: "PROXY", source, destination }, length)
  if (family === 1) {
    const ip = (at: number) => `${bytes[at]}.${bytes[at + 1]}.${bytes[at + 2]}.${bytes[at + 3]}`
    return header({ _tag: "Inet", host: ip(16), port: u16(bytes, 24) }, {
      _tag: "Inet",
      host: ip(20),
      port: u16(bytes, 26)
    })
  }
  if (family === 2) {
    const ip = (at: number) => {
      const groups: Array<string> = []
      for (let i = 0; i < 16; i += 2) groups.push(u16(bytes, at + i).toString(16))
      return canonicalIPv6(groups.join(":"))
    }
    return header({ _tag: "Inet", host: ip(16), port: u16(bytes, 48) }, {
      _tag: "Inet",
      host: ip(32),
      port: u16(bytes, 50)
    })
  }
  // UNIX: two paths of 108 bytes each, NUL-padded
  const path = (at: number) => {
    const field = Buffer.from(bytes.buffer, bytes.byteOffset + at, 108)
    const nul = field.indexOf(0)
    return field.subarray(0, nul < 0 ? 108 : nul).toString("utf8")
  }
  return header({ _tag: "Unix", path: path(16) }, { _tag: "Unix", path: path(124) })
}
