/**
 * effect-asynchat: asyncore/asynchat's channels, terminators and producers on Effect v4.
 *
 * @since 0.1.0
 */

/**
 * Terminator framing as a Stream combinator.
 *
 * @since 0.1.0
 */
export * as Framing from "./Framing.ts"

/**
 * What ends a frame: a delimiter, a byte count, or none.
 *
 * @since 0.1.0
 */
export * as Terminator from "./Terminator.ts"
