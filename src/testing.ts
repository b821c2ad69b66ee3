/**
 * effect-asynchat/testing: what tests of a protocol need beside the library itself.
 *
 * @since 0.1.0
 */

/**
 * The in-memory test transport: a `Listener` and a client connector joined without a socket, on the Effect
 * clock, with the chunking and latency of your choice.
 *
 * @since 0.1.0
 */
export * as MemoryTransport from "./MemoryTransport.ts"
