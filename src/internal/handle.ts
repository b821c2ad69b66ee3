/**
 * The `Chat` handle of a connection: what its handler (or a hand-driven client) calls to write, close and
 * reframe. Its functions are made when first asked for, so a connection that never uses one does not hold it;
 * each is an effect, so each run acts: `Effect.repeat(chat.push(ping))` pings every time, and one never run
 * sends nothing.
 */
import { Effect } from "effect"
import type { Address, ChatShape } from "../Chat.ts"
import type * as Terminator from "../Terminator.ts"
import { Offered, type Outbox } from "./outbox.ts"

/** Who a connection is. */
export interface Info {
  readonly id: number
  readonly localAddress: Address
  readonly remoteAddress: Address
}

/** What the handle needs of its connection. */
export interface Owner {
  readonly outbox: Pick<Outbox, "push" | "offer" | "pushStream" | "closeWhenDone" | "endOutput">
  /** `chat.close`: drops what is queued and ends the connection now. */
  close(): void
  /** `chat.discardBuffers`: drops queued output and the input of the frame in progress. */
  discardBuffers(): void
  terminator: Terminator.Terminator
}

const notAsyncChat = Effect.die(
  new Error("Chat.setTerminator needs a Protocol.asyncChat connection; this one is framed up front by its protocol")
)

/** @internal */
export class Handle implements ChatShape {
  readonly id: number
  readonly localAddress: Address
  readonly remoteAddress: Address
  private readonly owner: Owner
  private readonly exact: boolean
  private pushing: ChatShape["push"] | undefined = undefined

  constructor(owner: Owner, info: Info, exact: boolean) {
    this.owner = owner
    this.id = info.id
    this.localAddress = info.localAddress
    this.remoteAddress = info.remoteAddress
    this.exact = exact
  }

  get push(): ChatShape["push"] {
    const outbox = this.owner.outbox
    return this.pushing ??= (...data) => Effect.suspend(() => outbox.push(data))
  }

  get offer(): ChatShape["offer"] {
    const outbox = this.owner.outbox
    return (...data) => Effect.sync(() => outbox.offer(data) === Offered.Queued)
  }

  get pushStream(): ChatShape["pushStream"] {
    const outbox = this.owner.outbox
    return (stream) => outbox.pushStream(stream)
  }

  get closeWhenDone(): ChatShape["closeWhenDone"] {
    const outbox = this.owner.outbox
    return Effect.sync(() => outbox.closeWhenDone())
  }

  get endOutput(): ChatShape["endOutput"] {
    const outbox = this.owner.outbox
    return Effect.sync(() => outbox.endOutput())
  }

  get close(): ChatShape["close"] {
    const owner = this.owner
    return Effect.sync(() => owner.close())
  }

  get discardBuffers(): ChatShape["discardBuffers"] {
    const owner = this.owner
    return Effect.sync(() => owner.discardBuffers())
  }

  get terminator(): ChatShape["terminator"] {
    const owner = this.owner
    return Effect.sync(() => owner.terminator)
  }

  get setTerminator(): ChatShape["setTerminator"] {
    const owner = this.owner
    return this.exact
      ? (terminator) =>
        Effect.sync(() => {
          owner.terminator = terminator
        })
      : () => notAsyncChat
  }
}
