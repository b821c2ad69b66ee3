import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import * as ChatError from "../src/ChatError.ts"

describe("ChatError", () => {
  it("reasons say what happened from their fields; timeouts are Durations", () => {
    const idle = new ChatError.IdleTimeout({ timeout: Duration.seconds(30) })
    expect(Duration.toMillis(idle.timeout)).toBe(30_000)
    expect(idle.message).toBe("No input for 30s")
    expect(new ChatError.FrameTimeout({ timeout: Duration.seconds(10) }).message).toBe("Frame not complete after 10s")
    expect(new ChatError.WriteTimeout({ timeout: Duration.minutes(1) }).message).toBe("Output not taken for 1m")
    expect(new ChatError.ReadFailed({ cause: new Error("read ECONNRESET") }).message).toBe(
      "Read failed: read ECONNRESET"
    )
    expect(new ChatError.WriteFailed({ cause: "EPIPE" }).message).toBe("Write failed: EPIPE")
    expect(new ChatError.ProducerFailed({ cause: new Error("disk gone") }).message).toBe(
      "A producer failed: disk gone"
    )
    expect(new ChatError.ConnectFailed({ target: "127.0.0.1:1", cause: new Error("ECONNREFUSED") }).message).toBe(
      "Connect to 127.0.0.1:1 failed: ECONNREFUSED"
    )
    expect(new ChatError.ProxyHeaderInvalid({ detail: "none complete within 5s" }).message).toBe(
      "Invalid PROXY header: none complete within 5s"
    )
    expect(new ChatError.ProxyUntrusted({ peer: "203.0.113.7:51000" }).message).toBe(
      "Connection from 203.0.113.7:51000, which is not a trusted proxy"
    )
  })

  it("a ChatError's message is its reason's", () => {
    const error = new ChatError.ChatError({ reason: new ChatError.IdleTimeout({ timeout: Duration.seconds(5) }) })
    expect(error.message).toBe("No input for 5s")
    expect(error.reason._tag).toBe("IdleTimeout")
  })

  it("isChatError goes by the TypeId, so a ChatError of another copy of the package is one too", () => {
    const error = new ChatError.ChatError({ reason: new ChatError.ProducerFailed({ cause: "x" }) })
    expect(ChatError.isChatError(error)).toBe(true)
    expect(ChatError.isChatError({ [ChatError.TypeId]: ChatError.TypeId })).toBe(true)
    expect(ChatError.isChatError(new Error("x"))).toBe(false)
    expect(ChatError.isChatError(undefined)).toBe(false)
  })

  it.effect("is caught by reason", () =>
    Effect.gen(function*() {
      const failing = Effect.fail(
        new ChatError.ChatError({ reason: new ChatError.WriteTimeout({ timeout: Duration.seconds(1) }) })
      )
      const caught = yield* failing.pipe(
        Effect.catchReason("ChatError", "WriteTimeout", (reason) => Effect.succeed(Duration.toSeconds(reason.timeout)))
      )
      expect(caught).toBe(1)
    }))
})
