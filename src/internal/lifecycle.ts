/**
 * A handler's life on a connection: it runs in a fiber of its own until the connection's outcome is decided, and
 * what it queued is flushed when it returns (and, for a few seconds, when it fails).
 */
import { Cause, type Context, Deferred, Duration, Effect, type Exit, type Fiber, type Stream } from "effect"
import type { AsyncChatShape } from "../AsyncChat.ts"
import type { ChatShape } from "../Chat.ts"
import type * as ChatError from "../ChatError.ts"
import type { Outbox } from "./outbox.ts"
import type { Impl } from "./protocol.ts"

/** What a handler's life needs of its connection. */
export interface Served {
  /** The connection's handle: its `AsyncChat` handle too, for an `AsyncChat.make` connection. */
  readonly chat: ChatShape & AsyncChatShape
  /** The connection's services, with `chat` as `Chat` (and `AsyncChat`): what its handler runs with. */
  readonly context: Context.Context<never>
  readonly input: Stream.Stream<unknown, unknown>
  readonly outbox: Pick<Outbox, "done">
  /**
   * Waits for the connection's outcome, decided once by whichever comes first: the handler's end (after its
   * output is flushed), the output's end, `chat.close`, or the transport closing under us.
   */
  readonly outcome: Effect.Effect<void, unknown>
  /** Decides the outcome, unless it was decided already. */
  decide(exit: Exit.Exit<void, unknown>): void
  /** The handler is done: the output ending is then part of its flush, not a verdict of its own. */
  handlerDone(): void
  /** The handler's fiber, started: the connection interrupts it as it closes. */
  handlerStarted(fiber: Fiber.Fiber<void, unknown>): void
}

/** How long output queued before a handler failed may take to reach the peer before the connection closes. */
const FLUSH_AFTER_FAILURE = Duration.seconds(5)

/**
 * Runs `handler` on a connection until it is over: the handler returned (then queued output is flushed), a
 * `closeWhenDone` was reached, `close` was called, or something failed. When the handler fails, what it had
 * queued (answers to earlier requests) is still flushed, for at most a few seconds, before the failure closes
 * the connection. The caller's scope closes the socket, and interrupts the handler if it is still running.
 *
 * The handler runs in a fiber of its own, not in this one: whatever it does (an uninterruptible region, a value
 * that is not an effect, which kills its fiber outright), this fiber ends the connection once the outcome is
 * decided, and its finalizers run. Not a child fiber: a parent keeps a Set of its children, on every connection.
 */
export const serve = <E, R>(
  connection: Served,
  protocol: Impl<E, R>
): Effect.Effect<void, E | ChatError.ChatError, R> =>
  Effect.withFiber((fiber) => {
    // This fiber and the handler's run in the connection's context, which has `Chat` (and `AsyncChat`): one
    // context for both. (`Effect.provideService` would keep a frame on the handler's stack to restore the
    // context after, held by every waiting connection.) A caller whose fiber this is not its own restores its
    // context after (`Effect.scoped` does).
    fiber.setContext(connection.context)
    const { decide, handled } = handlerOf(connection, protocol)
    // Started at once and handed to the connection in the same step, before anything can interrupt this fiber:
    // the connection's finalizer interrupts it. Its services are this fiber's: what `R` asks for is there.
    const running = Effect.runForkWith(connection.context)(handled as Effect.Effect<void, unknown>)
    running.addObserver(decide)
    connection.handlerStarted(running)
    return connection.outcome
  }) as Effect.Effect<void, E | ChatError.ChatError, R>

/**
 * The handler's fiber's effect (the handler, then its flush), and its observer, which decides the connection's
 * outcome. Its closures are made here, in one context that holds only the connection and the protocol: every
 * waiting handler's fiber keeps them.
 */
const handlerOf = <E, R>(connection: Served, protocol: Impl<E, R>) => {
  const handler = Effect.suspend(() => protocol.handler(connection.input))
  return {
    handled: Effect.andThen(
      Effect.onExit(handler, (exit) => afterHandler(connection, exit)),
      () => flushOf(connection)
    ),
    decide: (exit: Exit.Exit<void, unknown>) => connection.decide(exit)
  }
}

/** Ends the output after what is queued, and waits until the peer has taken it. */
const flushOf = (connection: Served) =>
  Effect.andThen(connection.chat.closeWhenDone, Deferred.await(connection.outbox.done))

/** When the handler failed, what it had queued (answers to earlier requests) still goes out, for a while. */
const afterHandler = (connection: Served, exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> => {
  connection.handlerDone()
  return exit._tag === "Success" || Cause.hasInterruptsOnly(exit.cause)
    ? Effect.void
    : flushOf(connection).pipe(Effect.timeoutOption(FLUSH_AFTER_FAILURE), Effect.ignore, Effect.interruptible)
}
