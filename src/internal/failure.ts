/**
 * A framer's failure as the error reason users see, shared by `Framing`'s Stream combinators (in a
 * `FramingError`) and the connection runtime (in a `ChatError`). `Framing` imports this module and it imports
 * `Framing`'s error class back: the class is read only when a failure is turned into a reason, never as the
 * modules load, so the cycle is harmless.
 */
import { FrameTooLong } from "../Framing.ts"
import { InvalidTerminator } from "../Terminator.ts"
import type { Failure } from "./framer.ts"

/** The error reason of `failure`. */
export const reasonOf = (failure: Failure): FrameTooLong | InvalidTerminator =>
  failure._tag === "FrameTooLong"
    ? new FrameTooLong(
      failure.terminator === undefined
        ? { limit: failure.limit, message: failure.message }
        : { limit: failure.limit, terminator: failure.terminator, message: failure.message }
    )
    : new InvalidTerminator({ message: failure.message })
