/**
 * The `Chat` handle of a connection, and its `AsyncChat` handle when `AsyncChat.make` frames it: what its
 * handler (or a hand-driven client) calls to write, close and reframe. Its functions are made when first asked for, so a connection that never uses one does not hold it;
 * each is an effect, so each run acts: `Effect.repeat(chat.push(ping))` pings every time, and one never run
 * sends nothing.
 */
import { Effect } from "effect"
import type { AsyncChatShape } from "../AsyncChat.ts"
import type { Address, ChatShape, StartTls, TlsInfo } from "../Chat.ts"
import type * as ChatError from "../ChatError.ts"
import type * as Terminator from "../Terminator.ts"
import { Offered, type Outbox } from "./outbox.ts"

/** Who a connection is. */
export interface Info {
  readonly id: number
  readonly localAddress: Address
  readonly remoteAddress: Address
  readonly tls: TlsInfo | undefined
}

/** What the handle needs of its connection. */
export interface Owner {
  readonly outbox: Pick<Outbox, "push" | "offer" | "pushStream" | "closeWhenDone" | "endOutput">
  /** `chat.close`: drops what is queued and ends the connection now. */
  close(): void
  /** `chat.discardBuffers`: drops queued output and the input of the frame in progress. */
  discardBuffers(): void
  terminator: Terminator.Terminator
  /** `chat.startTls`: upgrades the connection in place. */
  startTls(options: StartTls): Effect.Effect<TlsInfo, ChatError.ChatError>
}

export class Handle implements ChatShape, AsyncChatShape {
  readonly id: number
  readonly localAddress: Address
  readonly remoteAddress: Address
  /** Set anew by an upgrade (`startTls`). */
  tls: TlsInfo | undefined
  private readonly owner: Owner
  private pushing: ChatShape["push"] | undefined = undefined

  constructor(owner: Owner, info: Info) {
    this.owner = owner
    this.id = info.id
    this.localAddress = info.localAddress
    this.remoteAddress = info.remoteAddress
    this.tls = info.tls
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

  get discardBuffers(): AsyncChatShape["discardBuffers"] {
    const owner = this.owner
    return Effect.sync(() => owner.discardBuffers())
  }

  get terminator(): AsyncChatShape["terminator"] {
    const owner = this.owner
    return Effect.sync(() => owner.terminator)
  }

  get startTls(): ChatShape["startTls"] {
    const owner = this.owner
    return (options) => Effect.suspend(() => owner.startTls(options))
  }

  get setTerminator(): AsyncChatShape["setTerminator"] {
    const owner = this.owner
    return (terminator) =>
      Effect.sync(() => {
        owner.terminator = terminator
      })
  }
}
