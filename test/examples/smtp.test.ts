/**
 * The smtp example: its session machine (`SmtpSession`) on its own, cut at every chunking; every
 * SMTPChannel/SMTPServer case of CPython 3.11's test_smtpd.py that applies, ported to a real TCP connection on
 * 127.0.0.1 with the replies byte for byte (smtpd's test channel: `testhost`, 32 MiB, no SMTPUTF8, no TLS);
 * bad input (each closing only its own connection, losing no message already acknowledged); STARTTLS and
 * implicit TLS; the idle timeout; and the deliveries (`toMaildir`, `mailbox`, `debugging`).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Stream } from "effect"
import { TestClock } from "effect/testing"
import { Buffer } from "node:buffer"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import type * as NodeStream from "node:stream"
import {
  debugging,
  type Envelope,
  type Event,
  mailbox,
  type Options,
  Rejected,
  serverOptions,
  Smtp,
  SmtpSession,
  toMaildir
} from "../../examples/smtp.ts"
import { type Chat, ChatServer, Framing, Listener } from "../../src/index.ts"
import { bytes, chunkEvery, latin1 } from "../helpers.ts"
import { connectLines, memory, readAll, readLines } from "../memory-helpers.ts"
import { certificates, rawConnect, RawPeer, tlsClient } from "../transport-helpers.ts"
import { settleCount } from "./peers.ts"

/** smtpd's test channel: `SMTPChannel(server, conn, addr)` with its defaults, named `testhost`. */
const base: Options = {
  hostname: "testhost",
  dataSizeLimit: 33554432,
  enableSMTPUTF8: false,
  starttls: false,
  implicitTls: false
}
const GREETING = "220 testhost effect-asynchat SMTP\r\n"
const HELP_LIST = "EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY"

// ---------------------------------------------------------------------------------------------------------------
// The machine

const showEvent = (event: Event): string => {
  switch (event._tag) {
    case "Reply":
      return event.text
    case "Message":
      return `Message ${event.mailFrom} -> ${event.recipients.join(",")} ` +
        `[${event.mailOptions.join(" ")}] [${event.rcptOptions.join(" ")}] ${JSON.stringify(latin1(event.data))}`
    default:
      return event._tag
  }
}

/** The events `SmtpSession(options)` makes of `input`, delivered in pieces of `size` bytes. */
const eventsOf = (options: Options, input: string | Uint8Array, size: number) => {
  const data = typeof input === "string" ? bytes(input) : input
  return Stream.fromIterable(chunkEvery(data, size)).pipe(
    Framing.decode(SmtpSession(options)),
    Stream.map(showEvent),
    Stream.runCollect,
    Effect.exit,
    Effect.runSync
  )
}

const sizes = (input: string) => [1, 2, 3, 5, 7, 11, 13, 64, bytes(input).length]

describe("smtp example: the session machine", () => {
  const session = "EHLO client\r\n" +
    "MAIL FROM:<a@example> BODY=8BITMIME SIZE=100\r\n" +
    "RCPT TO:<b@example>\r\n" +
    "RCPT TO:c@example\r\n" +
    "DATA\r\n" +
    "Subject: hi\r\n" +
    "\r\n" +
    "..leading dot\r\n" +
    "..\r\n" +
    "line with \xe9\r\n" +
    ".\r\n" +
    "MAIL FROM:<>\r\n" +
    "RCPT TO:<d@example>\r\n" +
    "DATA\r\n" +
    ".\r\n" +
    "NOOP\r\n" +
    "QUIT\r\n"

  it("answers a pipelined session at every chunking: replies, dot-unstuffed messages joined by \\n", () => {
    for (const size of sizes(session)) {
      expect(eventsOf(base, session, size)).toEqual(Exit.succeed([
        "250-testhost",
        "250-SIZE 33554432",
        "250-8BITMIME",
        "250-PIPELINING",
        "250 HELP",
        "250 OK",
        "250 OK",
        "250 OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "Message a@example -> b@example,c@example [BODY=8BITMIME SIZE=100] [] " +
        JSON.stringify("Subject: hi\n\n.leading dot\n.\nline with \xc3\xa9"),
        "250 OK",
        "250 OK",
        "354 End data with <CR><LF>.<CR><LF>",
        // ours, on purpose: the lone dot as the first data line ends an empty message
        "Message <> -> d@example [] [] \"\"",
        "250 OK",
        "221 Bye",
        "Quit"
      ]))
    }
  })

  it("keeps bytes that are not UTF-8 in data as they came, and refuses them in a command", () => {
    const input = Buffer.concat([
      Buffer.from("HELO x\r\nMAIL FROM:a@x\r\nRCPT TO:b@x\r\nDATA\r\nh"),
      Buffer.from([0xc3, 0xa9, 0x6c, 0xff]),
      Buffer.from("\r\n.\r\nNO"),
      Buffer.from([0xff]),
      Buffer.from("OP\r\n")
    ])
    for (const size of [1, 2, 3, 5, input.length]) {
      expect(eventsOf(base, input, size)).toEqual(Exit.succeed([
        "250 testhost",
        "250 OK",
        "250 OK",
        "354 End data with <CR><LF>.<CR><LF>",
        `Message a@x -> b@x [] [] ${JSON.stringify("h\xc3\xa9l\xff")}`,
        "500 Error: bad syntax"
      ]))
    }
  })

  it("offers STARTTLS when it has a certificate, pauses on it, and forgets the session before it", () => {
    const input = "EHLO client\r\nMAIL FROM:<a@x>\r\nSTARTTLS\r\nRCPT TO:<b@x>\r\nEHLO again\r\nSTARTTLS\r\n"
    for (const size of sizes(input)) {
      expect(eventsOf({ ...base, starttls: true }, input, size)).toEqual(Exit.succeed([
        "250-testhost",
        "250-SIZE 33554432",
        "250-8BITMIME",
        "250-PIPELINING",
        "250-STARTTLS",
        "250 HELP",
        "250 OK",
        "220 Ready to start TLS",
        "StartTls",
        // on a plain stream the pause is a `next`: what follows is the new session's, which has no HELO yet
        "503 Error: send HELO first",
        "250-testhost",
        "250-SIZE 33554432",
        "250-8BITMIME",
        "250-PIPELINING",
        "250 HELP",
        "554 Error: TLS already active"
      ]))
    }
  })

  it("STARTTLS is a Framing.pause step, and unknown without a certificate or with implicit TLS", () => {
    const machine = SmtpSession({ ...base, starttls: true })
    const frame = { bytes: bytes("STARTTLS"), terminated: true } as Framing.Frame
    const step = machine.step(machine.initial, frame)
    expect(step._tag).toBe("Pause")
    expect(step._tag !== "Fail" && step.state.tls).toBe(true)
    expect(eventsOf({ ...base, starttls: true }, "STARTTLS now\r\n", 1)).toEqual(
      Exit.succeed(["501 Syntax: STARTTLS"])
    )
    for (const options of [base, { ...base, starttls: true, implicitTls: true }]) {
      expect(eventsOf(options, "STARTTLS\r\nHELP STARTTLS\r\n", 3)).toEqual(Exit.succeed([
        "500 Error: command \"STARTTLS\" not recognized",
        `501 Supported commands: ${HELP_LIST}`
      ]))
    }
  })

  it("counts the data size as smtpd does, and is back to commands after 552", () => {
    // 10 bytes of lines and 2 CRLFs between them: 32 fits exactly, 33 does not
    const fits = "HELO x\r\nMAIL FROM:a@x\r\nRCPT TO:b@x\r\nDATA\r\n" + "a".repeat(15) + "\r\n" + "b".repeat(15) +
      "\r\n.\r\n"
    const over = fits.replace("a".repeat(15), "a".repeat(16)) + "RCPT TO:c@x\r\n"
    const head = ["250 testhost", "250 OK", "250 OK", "354 End data with <CR><LF>.<CR><LF>"]
    for (const size of [1, 3, 7, bytes(over).length]) {
      expect(eventsOf({ ...base, dataSizeLimit: 32 }, fits, size)).toEqual(Exit.succeed([
        ...head,
        `Message a@x -> b@x [] [] ${JSON.stringify(`${"a".repeat(15)}\n${"b".repeat(15)}`)}`
      ]))
      expect(eventsOf({ ...base, dataSizeLimit: 32 }, over, size)).toEqual(Exit.succeed([
        ...head,
        "552 Error: Too much mail data",
        "503 Error: need MAIL command"
      ]))
    }
  })
})

// ---------------------------------------------------------------------------------------------------------------
// Over TCP

/** Where a complete reply (its `NNN-` lines, then its `NNN ` line) that starts at `from` ends; -1 until it has. */
const replyEnd = (text: string, from: number): number => {
  let at = from
  for (;;) {
    const end = text.indexOf("\r\n", at)
    if (end < 0) return -1
    const line = text.slice(at, end)
    at = end + 2
    if (!/^\d{3}-/.test(line)) return at
  }
}

/**
 * A client of the server, as test_smtpd's `write_line` is: each line is sent with CRLF, and the reply to each
 * line that has one (a command; a data line does not, but the lone dot does) is waited for, in order.
 */
class Dialog<S extends NodeStream.Duplex = NodeStream.Duplex> {
  private consumed = 0
  private inData = false
  readonly peer: RawPeer<S>
  constructor(peer: RawPeer<S>) {
    this.peer = peer
  }

  /** The next complete reply, all its lines, one char per byte. */
  reply(): Effect.Effect<string> {
    return Effect.suspend(() => {
      let end = -1
      return this.peer.until(`a reply after ${this.consumed}`, (p) => (end = replyEnd(p.text, this.consumed)) >= 0)
        .pipe(Effect.map(() => {
          const reply = this.peer.text.slice(this.consumed, end)
          this.consumed = end
          return reply
        }))
    })
  }

  /** Everything received after the last reply waited for. */
  get rest(): string {
    return this.peer.text.slice(this.consumed)
  }

  /**
   * Sends `text` (`\r\n`-separated lines, as test_smtpd's `write_line(b"data\r\nmore\r\n.")`), line by line,
   * waiting for each reply; answers the last line of the last reply, as smtpd's mock socket's `last` (or "" if
   * nothing was answered).
   */
  say(text: string | Buffer): Effect.Effect<string> {
    return Effect.gen({ self: this }, function*() {
      const data = typeof text === "string" ? Buffer.from(text, "utf8") : text
      let last = ""
      for (const line of splitCrlf(data)) {
        this.peer.socket.write(Buffer.concat([line, Buffer.from("\r\n")]))
        const isDot = line.length === 1 && line[0] === 0x2e
        if (this.inData && !isDot) continue
        const reply = yield* this.reply()
        this.inData = !this.inData && reply.startsWith("354")
        if (isDot) this.inData = false
        const before = reply.lastIndexOf("\r\n", reply.length - 3)
        last = before < 0 ? reply : reply.slice(before + 2)
      }
      return last
    })
  }
}

const splitCrlf = (data: Buffer): Array<Buffer> => {
  const out: Array<Buffer> = []
  let from = 0
  for (let i = data.indexOf("\r\n"); i >= 0; i = data.indexOf("\r\n", from)) {
    out.push(data.subarray(from, i))
    from = i + 2
  }
  out.push(data.subarray(from))
  return out
}

/** What smtpd's DummyServer records: (peer, mailfrom, rcpttos, data), plus the options. */
interface Recorded {
  readonly peer: string
  readonly mailFrom: string
  readonly recipients: ReadonlyArray<string>
  readonly data: string
}

/**
 * smtpd's test DummyServer: records each message; answers `250 Okish` to the data `return status`, and
 * `250 SMTPUTF8 message okish` to a message sent with SMTPUTF8.
 */
const dummyServer = () => {
  const envelopes: Array<Envelope> = []
  const messages: Array<Recorded> = []
  const deliver = (envelope: Envelope) =>
    Effect.suspend(() => {
      envelopes.push(envelope)
      messages.push({
        peer: envelope.peer._tag === "Inet" ? envelope.peer.host : "?",
        mailFrom: envelope.mailFrom,
        recipients: envelope.recipients,
        data: latin1(envelope.data)
      })
      if (latin1(envelope.data) === "return status") return Effect.fail(new Rejected("250 Okish"))
      if (envelope.mailOptions.includes("SMTPUTF8")) return Effect.fail(new Rejected("250 SMTPUTF8 message okish"))
      return Effect.void
    })
  return { envelopes, messages, deliver }
}

interface Served {
  readonly port: number
  readonly server: ChatServer.ChatServerShape
  readonly envelopes: Array<Envelope>
  readonly messages: Array<Recorded>
  /** A new connection, its greeting read and checked. */
  readonly connect: Effect.Effect<Dialog<any>, unknown, any>
}

/** Serves `Smtp(options, dummy.deliver, tls)` on 127.0.0.1:0 for `body`. */
const withSmtp = <A, E>(
  options: Options,
  body: (served: Served) => Effect.Effect<A, E, any>,
  tls?: Chat.StartTls
) => {
  const dummy = dummyServer()
  return Effect.scoped(Effect.gen(function*() {
    const server = yield* ChatServer.make(Smtp(options, dummy.deliver, tls), serverOptions)
    if (server.address._tag !== "Inet") return yield* Effect.die("not TCP")
    const port = server.address.port
    const connect = Effect.gen(function*() {
      const dialog = new Dialog(yield* rawConnect(port))
      expect(yield* dialog.reply()).toBe(GREETING)
      return dialog
    })
    return yield* body({ port, server, envelopes: dummy.envelopes, messages: dummy.messages, connect })
  })).pipe(Effect.provide(Listener.layerTcp({ host: "127.0.0.1", port: 0 })))
}

/** One line sent (its reply not checked), or a line and the last line of its reply. */
type Step = string | readonly [string, string]

/** A test_smtpd case: a fresh channel, the lines written in order, each checked reply asserted byte for byte. */
const channel = (options: Options, steps: ReadonlyArray<Step>, then?: (served: Served) => void) =>
  withSmtp(options, (served) =>
    Effect.gen(function*() {
      const dialog = yield* served.connect
      for (const step of steps) {
        if (typeof step === "string") yield* dialog.say(step)
        else expect([step[0], yield* dialog.say(step[0])]).toEqual([step[0], step[1]])
      }
      then?.(served)
    }))

const ok = "250 OK\r\n"
const HELO = "HELO example"
const EHLO = "EHLO example"
const MAIL = "MAIL From:eggs@example"
const RCPT = "RCPT To:spam@example"
const peerMessage = (mailFrom: string, recipients: ReadonlyArray<string>, data: string): Recorded => ({
  peer: "127.0.0.1",
  mailFrom,
  recipients,
  data
})
const fill = 512 - "MAIL from:<@example>".length

/** SMTPDChannelTest (smtpd's is decode_data=True; ours is bytes, which changes none of these replies). */
const channelTest: ReadonlyArray<readonly [string, ReadonlyArray<Step>, ((served: Served) => void)?]> = [
  // test_broken_connect, test_decode_data_and_enable_SMTPUTF8_raises, test_server_accept: Python internals
  ["test_missing_data", [["", "500 Error: bad syntax\r\n"]]],
  ["test_EHLO", [[EHLO, "250 HELP\r\n"]]],
  ["test_EHLO_bad_syntax", [["EHLO", "501 Syntax: EHLO hostname\r\n"]]],
  ["test_EHLO_duplicate", [EHLO, [EHLO, "503 Duplicate HELO/EHLO\r\n"]]],
  ["test_EHLO_HELO_duplicate", [EHLO, [HELO, "503 Duplicate HELO/EHLO\r\n"]]],
  ["test_HELO", [[HELO, "250 testhost\r\n"]]],
  ["test_HELO_EHLO_duplicate", [HELO, [EHLO, "503 Duplicate HELO/EHLO\r\n"]]],
  ["test_HELP", [["HELP", `250 Supported commands: ${HELP_LIST}\r\n`]]],
  ["test_HELP_command", [["HELP MAIL", "250 Syntax: MAIL FROM: <address>\r\n"]]],
  ["test_HELP_command_unknown", [["HELP SPAM", `501 Supported commands: ${HELP_LIST}\r\n`]]],
  ["test_HELO_bad_syntax", [["HELO", "501 Syntax: HELO hostname\r\n"]]],
  ["test_HELO_duplicate", [HELO, [HELO, "503 Duplicate HELO/EHLO\r\n"]]],
  ["test_HELO_parameter_rejected_when_extensions_not_enabled", [
    HELO,
    ["MAIL from:<foo@example.com> SIZE=1234", "501 Syntax: MAIL FROM: <address>\r\n"]
  ]],
  ["test_MAIL_allows_space_after_colon", [HELO, ["MAIL from:   <foo@example.com>", ok]]],
  ["test_extended_MAIL_allows_space_after_colon", [EHLO, ["MAIL from:   <foo@example.com> size=20", ok]]],
  ["test_NOOP", [["NOOP", ok]]],
  ["test_HELO_NOOP", [HELO, ["NOOP", ok]]],
  ["test_NOOP_bad_syntax", [["NOOP hi", "501 Syntax: NOOP\r\n"]]],
  ["test_QUIT", [["QUIT", "221 Bye\r\n"]]],
  ["test_HELO_QUIT", [HELO, ["QUIT", "221 Bye\r\n"]]],
  ["test_QUIT_arg_ignored", [["QUIT bye bye", "221 Bye\r\n"]]],
  // test_bad_state: sets a Python attribute to a state that cannot exist here
  ["test_command_too_long", [HELO, [`MAIL from: ${"a".repeat(512)}@example`, "500 Error: line too long\r\n"]]],
  ["test_MAIL_command_limit_extended_with_SIZE", [
    EHLO,
    [`MAIL from:<${"a".repeat(fill)}@example> SIZE=1234`, ok],
    [`MAIL from:<${"a".repeat(fill + 26)}@example> SIZE=1234`, "500 Error: line too long\r\n"]
  ]],
  ["test_MAIL_command_rejects_SMTPUTF8_by_default", [
    EHLO,
    [
      "MAIL from: <naive@example.com> BODY=8BITMIME SMTPUTF8",
      "555 MAIL FROM parameters not recognized or not implemented\r\n"
    ]
  ]],
  ["test_MAIL_size_parameter", [EHLO, ["MAIL FROM:<eggs@example> SIZE=512", ok]]],
  ["test_MAIL_invalid_size_parameter", [
    EHLO,
    ["MAIL FROM:<eggs@example> SIZE=invalid", "501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]\r\n"]
  ]],
  ["test_MAIL_RCPT_unknown_parameters", [
    EHLO,
    ["MAIL FROM:<eggs@example> ham=green", "555 MAIL FROM parameters not recognized or not implemented\r\n"],
    "MAIL FROM:<eggs@example>",
    ["RCPT TO:<eggs@example> ham=green", "555 RCPT TO parameters not recognized or not implemented\r\n"]
  ]],
  ["test_need_MAIL", [HELO, ["RCPT to:spam@example", "503 Error: need MAIL command\r\n"]]],
  ["test_MAIL_syntax_HELO", [HELO, ["MAIL from eggs@example", "501 Syntax: MAIL FROM: <address>\r\n"]]],
  ["test_MAIL_syntax_EHLO", [
    EHLO,
    ["MAIL from eggs@example", "501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]\r\n"]
  ]],
  ["test_MAIL_missing_address", [HELO, ["MAIL from:", "501 Syntax: MAIL FROM: <address>\r\n"]]],
  ["test_MAIL_chevrons", [HELO, ["MAIL from:<eggs@example>", ok]]],
  ["test_MAIL_empty_chevrons", [EHLO, ["MAIL from:<>", ok]]],
  // the four quoted-localpart cases: smtpd's test reads channel.mailfrom; here the message is sent to see it
  ...[
    "MAIL from: <\"Fred Blogs\"@example.com>",
    "MAIL from: \"Fred Blogs\"@example.com",
    "MAIL from: <\"Fred Blogs\"@example.com> SIZE=1000",
    "MAIL from: \"Fred Blogs\"@example.com SIZE=1000"
  ].map((mail, i) =>
    [
      `test_MAIL_quoted_localpart${["", "_no_angles", "_with_size", "_with_size_no_angles"][i]}`,
      [EHLO, [mail, ok], RCPT, "DATA", ["x\r\n.", ok]],
      (served: Served) => expect(served.messages.map((m) => m.mailFrom)).toEqual(["\"Fred Blogs\"@example.com"])
    ] as const
  ),
  ["test_nested_MAIL", [HELO, MAIL, ["MAIL from:spam@example", "503 Error: nested MAIL command\r\n"]]],
  ["test_VRFY", [["VRFY eggs@example", "252 Cannot VRFY user, but will accept message and attempt delivery\r\n"]]],
  ["test_VRFY_syntax", [["VRFY", "501 Syntax: VRFY <address>\r\n"]]],
  ["test_EXPN_not_implemented", [["EXPN", "502 EXPN not implemented\r\n"]]],
  ["test_no_HELO_MAIL", [["MAIL from:<foo@example.com>", "503 Error: send HELO first\r\n"]]],
  ["test_need_RCPT", [HELO, MAIL, ["DATA", "503 Error: need RCPT command\r\n"]]],
  ["test_RCPT_syntax_HELO", [HELO, "MAIL From: eggs@example", [
    "RCPT to eggs@example",
    "501 Syntax: RCPT TO: <address>\r\n"
  ]]],
  ["test_RCPT_syntax_EHLO", [EHLO, "MAIL From: eggs@example", [
    "RCPT to eggs@example",
    "501 Syntax: RCPT TO: <address> [SP <mail-parameters>]\r\n"
  ]]],
  ["test_RCPT_lowercase_to_OK", [HELO, "MAIL From: eggs@example", ["RCPT to: <eggs@example>", ok]]],
  ["test_no_HELO_RCPT", [["RCPT to eggs@example", "503 Error: send HELO first\r\n"]]],
  ["test_data_dialog", [
    HELO,
    [MAIL, ok],
    [RCPT, ok],
    ["DATA", "354 End data with <CR><LF>.<CR><LF>\r\n"],
    ["data\r\nmore\r\n.", ok]
  ], (served) => expect(served.messages).toEqual([peerMessage("eggs@example", ["spam@example"], "data\nmore")])],
  ["test_DATA_syntax", [HELO, MAIL, RCPT, ["DATA spam", "501 Syntax: DATA\r\n"]]],
  ["test_no_HELO_DATA", [["DATA spam", "503 Error: send HELO first\r\n"]]],
  // write_line appends CRLF: after the message, the empty command line left over is smtpd's 500 too
  ["test_data_transparency_section_4_5_2", [HELO, MAIL, RCPT, "DATA", ["..\r\n.", ok], [
    "",
    "500 Error: bad syntax\r\n"
  ]], (served) => expect(served.messages.map((m) => m.data)).toEqual(["."])],
  [
    "test_multiple_RCPT",
    [HELO, MAIL, RCPT, "RCPT To:ham@example", "DATA", ["data\r\n.", ok]],
    (served) => expect(served.messages).toEqual([peerMessage("eggs@example", ["spam@example", "ham@example"], "data")])
  ],
  ["test_manual_status", [HELO, MAIL, RCPT, "DATA", ["return status\r\n.", "250 Okish\r\n"]]],
  [
    "test_RSET",
    [HELO, MAIL, RCPT, ["RSET", ok], "MAIL From:foo@example", "RCPT To:eggs@example", "DATA", ["data\r\n.", ok]],
    (served) => expect(served.messages).toEqual([peerMessage("foo@example", ["eggs@example"], "data")])
  ],
  ["test_HELO_RSET", [HELO, ["RSET", ok]]],
  ["test_RSET_syntax", [["RSET hi", "501 Syntax: RSET\r\n"]]],
  ["test_unknown_command", [["UNKNOWN_CMD", "500 Error: command \"UNKNOWN_CMD\" not recognized\r\n"]]]
  // test_attribute_deprecations: Python attribute deprecations
]

describe("smtp example over TCP: test_smtpd's SMTPDChannelTest", () => {
  for (const [name, steps, then] of channelTest) it.live(name, () => channel(base, steps, then))

  // smtpd's test sets channel.data_size_limit = 1048 by hand; here it is the option
  it.live("test_data_longer_than_default_data_size_limit", () =>
    channel({ ...base, dataSizeLimit: 1048 }, [
      HELO,
      MAIL,
      RCPT,
      "DATA",
      [`${"A".repeat(1049)}\r\n.`, "552 Error: Too much mail data\r\n"]
    ], (served) => expect(served.messages).toEqual([])))

  it.live("test_MAIL_size_parameter_larger_than_default_data_size_limit", () =>
    channel({ ...base, dataSizeLimit: 1048 }, [EHLO, [
      "MAIL FROM:<eggs@example> SIZE=2096",
      "552 Error: message size exceeds fixed maximum message size\r\n"
    ]]))

  it.live("EHLO's whole reply: SIZE, 8BITMIME, PIPELINING, HELP (smtpd's test checks its last line only)", () =>
    withSmtp(base, ({ connect }) =>
      Effect.gen(function*() {
        const dialog = yield* connect
        yield* dialog.peer.write("EHLO example\r\n")
        expect(yield* dialog.reply()).toBe(
          "250-testhost\r\n250-SIZE 33554432\r\n250-8BITMIME\r\n250-PIPELINING\r\n250 HELP\r\n"
        )
      })))

  it.live("HELP after EHLO gives the extended syntax", () =>
    channel(base, [EHLO, ["HELP RCPT", "250 Syntax: RCPT TO: <address> [SP <mail-parameters>]\r\n"]]))
})

describe("smtp example over TCP: test_smtpd's other channel classes", () => {
  const limited = { ...base, dataSizeLimit: 32 }
  it.live("SMTPDChannelWithDataSizeLimitTest.test_data_limit_dialog", () =>
    channel(limited, [
      HELO,
      [MAIL, ok],
      [RCPT, ok],
      ["DATA", "354 End data with <CR><LF>.<CR><LF>\r\n"],
      ["data\r\nmore\r\n.", ok]
    ], (served) => expect(served.messages).toEqual([peerMessage("eggs@example", ["spam@example"], "data\nmore")])))

  it.live("SMTPDChannelWithDataSizeLimitTest.test_data_limit_dialog_too_much_data", () =>
    channel(limited, [
      HELO,
      [MAIL, ok],
      [RCPT, ok],
      ["DATA", "354 End data with <CR><LF>.<CR><LF>\r\n"],
      ["This message is longer than 32 bytes\r\n.", "552 Error: Too much mail data\r\n"]
    ], (served) => expect(served.messages).toEqual([])))

  // SMTPDChannelWithDecodeDataFalse is our mode; SMTPDChannelWithDecodeDataTrue's cases are the same dialogs
  it.live("SMTPDChannelWithDecodeDataFalse.test_ascii_data", () =>
    channel(
      base,
      [HELO, MAIL, RCPT, "DATA", "plain ascii text", [".", ok]],
      (served) => expect(served.messages.map((m) => m.data)).toEqual(["plain ascii text"])
    ))

  it.live("SMTPDChannelWithDecodeDataFalse.test_utf8_data", () =>
    channel(
      base,
      [HELO, MAIL, RCPT, "DATA", "utf8 enriched text: żźć", "and some plain ascii", [".", ok]],
      (served) =>
        expect(served.envelopes.map((e) => Buffer.from(e.data).toString("hex"))).toEqual([
          Buffer.from("utf8 enriched text: \xc5\xbc\xc5\xba\xc4\x87\nand some plain ascii", "latin1").toString("hex")
        ])
    ))

  const utf8 = { ...base, enableSMTPUTF8: true }
  it.live("SMTPDChannelTestWithEnableSMTPUTF8True.test_MAIL_command_accepts_SMTPUTF8_when_announced", () =>
    channel(utf8, [EHLO, ["MAIL from: <naïve@example.com> BODY=8BITMIME SMTPUTF8", ok]]))

  it.live("SMTPDChannelTestWithEnableSMTPUTF8True.test_process_smtputf8_message", () =>
    channel(utf8, [
      EHLO,
      ...["", "BODY=8BITMIME SMTPUTF8"].flatMap((params): Array<Step> => [
        [`MAIL from: <a@example> ${params}`, ok],
        ["rcpt to:<b@example.com>", ok],
        ["data", "354 End data with <CR><LF>.<CR><LF>\r\n"],
        ["c\r\n.", params === "" ? ok : "250 SMTPUTF8 message okish\r\n"]
      ])
    ], (served) => expect(served.envelopes.map((e) => e.mailOptions)).toEqual([[], ["BODY=8BITMIME", "SMTPUTF8"]])))

  it.live("SMTPDChannelTestWithEnableSMTPUTF8True.test_utf8_data", () =>
    channel(utf8, [
      EHLO,
      ["MAIL From: naïve@examplé BODY=8BITMIME SMTPUTF8", ok],
      ["RCPT To:späm@examplé", ok],
      ["DATA", "354 End data with <CR><LF>.<CR><LF>\r\n"],
      "utf8 enriched text: żźć",
      [".", "250 SMTPUTF8 message okish\r\n"]
    ], (served) => {
      expect(served.envelopes.map((e) => [e.mailFrom, e.recipients, Buffer.from(e.data).toString("utf8")])).toEqual([
        ["naïve@examplé", ["späm@examplé"], "utf8 enriched text: żźć"]
      ])
    }))

  const fillUtf8 = 512 + 26 + 10 - "mail from:<@example>".length
  it.live("SMTPDChannelTestWithEnableSMTPUTF8True.test_MAIL_command_limit_extended_with_SIZE_and_SMTPUTF8", () =>
    channel(utf8, [
      "ehlo example",
      [`MAIL from:<${"a".repeat(fillUtf8 + 1)}@example>`, "500 Error: line too long\r\n"],
      [`MAIL from:<${"a".repeat(fillUtf8)}@example>`, ok]
    ]))

  it.live("SMTPDChannelTestWithEnableSMTPUTF8True.test_multiple_emails_with_extended_command_length", () =>
    channel(utf8, [
      "ehlo example",
      ...["a", "b", "c"].flatMap((char): Array<Step> => [
        [`MAIL from:<${char.repeat(fillUtf8)}a@example>`, "500 Error: line too long\r\n"],
        [`MAIL from:<${char.repeat(fillUtf8)}@example>`, ok],
        ["rcpt to:<hans@example.com>", ok],
        ["data", "354 End data with <CR><LF>.<CR><LF>\r\n"],
        ["test\r\n.", ok]
      ])
    ], (served) => expect(served.messages.map((m) => m.mailFrom[0])).toEqual(["a", "b", "c"])))

  const mail555 = "555 MAIL FROM parameters not recognized or not implemented\r\n"
  // TestMailOptionParsing.test_with_decode_data_true: decode_data refuses BODY=; ours is bytes mode, its
  // decode_data=False variant follows
  it.live("TestMailOptionParsing.test_with_decode_data_false", () =>
    channel(base, [
      EHLO,
      ["MAIL from: <foo@example.com> size=20 SMTPUTF8", mail555],
      ["MAIL from: <foo@example.com> size=20 SMTPUTF8 BODY=8BITMIME", mail555],
      [
        "MAIL from: <foo@example.com> size=20 SMTPUTF8 BODY=UNKNOWN",
        "501 Error: BODY can only be one of 7BIT, 8BITMIME\r\n"
      ],
      ["MAIL from: <foo@example.com> size=20 body=8bitmime", ok]
    ]))

  it.live("TestMailOptionParsing.test_with_enable_smtputf8_true", () =>
    channel(utf8, [EHLO, ["MAIL from: <foo@example.com> size=20 body=8bitmime smtputf8", ok]]))

  it.live("TestRcptOptionParsing.test_params_rejected", () =>
    channel(base, [
      EHLO,
      "MAIL from: <foo@example.com> size=20",
      ["RCPT to: <foo@example.com> foo=bar", "555 RCPT TO parameters not recognized or not implemented\r\n"]
    ]))

  it.live("TestRcptOptionParsing.test_nothing_accepted", () =>
    channel(base, [EHLO, "MAIL from: <foo@example.com> size=20", ["RCPT to: <foo@example.com>", ok]]))

  // SMTPDServerTest (process_message unimplemented, argument checks), TestFamilyDetection, MiscTestCase:
  // Python internals
})

/** An envelope as the server hands it over, from 127.0.0.1 unless `extra` says otherwise. */
const envelopeOf = (mailFrom: string, data: string, extra: Partial<Envelope> = {}): Envelope => ({
  peer: { _tag: "Inet", host: "127.0.0.1", port: 1 },
  mailFrom,
  recipients: ["to@example"],
  data: Buffer.from(data, "utf8"),
  mailOptions: [],
  rcptOptions: [],
  tls: false,
  ...extra
})

/** smtpd's DebuggingServerTest message, from `peer-address`. */
const debugEnvelope = (data: string, mailOptions: ReadonlyArray<string> = []) =>
  envelopeOf("eggs@example", data, { peer: { _tag: "Inet", host: "peer-address", port: 1 }, mailOptions })

describe("smtp example: DebuggingServerTest's print (decode_data=True style)", () => {
  it("test_process_message_with_decode_data_true", () => {
    // write_line(b"From: test\n\nhello\n") is one data line with its LFs; received_data is that line
    expect(debugging(debugEnvelope("From: test\n\nhello\n"))).toBe(
      "---------- MESSAGE FOLLOWS ----------\n" +
        "From: test\n" +
        "X-Peer: peer-address\n" +
        "\n" +
        "hello\n" +
        "------------ END MESSAGE ------------"
    )
  })

  // test_process_message_with_decode_data_false and test_process_message_with_enable_SMTPUTF8_true print
  // bytes reprs (b'...'): our print is the decode_data=True one, whose SMTPUTF8 variant follows as text
  it("test_process_SMTPUTF8_message_with_enable_SMTPUTF8_true, as text", () => {
    expect(debugging(debugEnvelope("From: test\n\nh\u00e9llo\n", ["BODY=8BITMIME", "SMTPUTF8"]))).toBe(
      "---------- MESSAGE FOLLOWS ----------\n" +
        "mail options: ['BODY=8BITMIME', 'SMTPUTF8']\n" +
        "From: test\n" +
        "X-Peer: peer-address\n" +
        "\n" +
        "h\u00e9llo\n" +
        "------------ END MESSAGE ------------"
    )
  })

  it.live("a message over TCP prints with the peer's host", () =>
    withSmtp(base, (served) =>
      Effect.gen(function*() {
        const dialog = yield* served.connect
        yield* dialog.say("EHLO example\r\nMAIL From:eggs@example\r\nRCPT To:spam@example\r\nDATA")
        expect(yield* dialog.say("From: test\r\n\r\nhello\r\n.")).toBe(ok)
        expect(debugging(served.envelopes[0])).toBe(
          "---------- MESSAGE FOLLOWS ----------\nFrom: test\nX-Peer: 127.0.0.1\n\nhello\n" +
            "------------ END MESSAGE ------------"
        )
      })))
})

// ---------------------------------------------------------------------------------------------------------------
// Bad input

/** Sends one whole message on `dialog` and asserts its 250. */
const sendMessage = (dialog: Dialog<any>, from: string, data: string) =>
  Effect.gen(function*() {
    expect(yield* dialog.say(`MAIL FROM:<${from}>`)).toBe(ok)
    expect(yield* dialog.say("RCPT TO:<to@example>")).toBe(ok)
    expect(yield* dialog.say("DATA")).toBe("354 End data with <CR><LF>.<CR><LF>\r\n")
    expect(yield* dialog.say(`${data}\r\n.`)).toBe(ok)
  })

/** Another connection, opened before the bad input, still works after it. */
const stillServes = (other: Dialog<any>) =>
  Effect.gen(function*() {
    expect(yield* other.say("NOOP")).toBe(ok)
    expect(other.peer.closed).toBe(false)
  })

describe("smtp example: bad input", () => {
  it.live("DATA over the size limit is 552, and the connection goes on: MAIL, RCPT, DATA work after it", () =>
    withSmtp({ ...base, dataSizeLimit: 32 }, (served) =>
      Effect.gen(function*() {
        const dialog = yield* served.connect
        yield* dialog.say(EHLO)
        yield* sendMessage(dialog, "first@example", "short")
        expect(yield* dialog.say("MAIL FROM:<big@example>\r\nRCPT TO:<to@example>\r\nDATA")).toBe(
          "354 End data with <CR><LF>.<CR><LF>\r\n"
        )
        expect(yield* dialog.say(`${"x".repeat(20)}\r\n${"y".repeat(20)}\r\n.`)).toBe(
          "552 Error: Too much mail data\r\n"
        )
        yield* sendMessage(dialog, "after@example", "again")
        expect(served.messages.map((m) => [m.mailFrom, m.data])).toEqual([
          ["first@example", "short"],
          ["after@example", "again"]
        ])
      })))

  it.live("a data line far over the limit is 552 and closes only its connection; earlier mail is kept", () =>
    withSmtp({ ...base, dataSizeLimit: 32 }, (served) =>
      Effect.gen(function*() {
        const other = yield* served.connect
        const dialog = yield* served.connect
        yield* dialog.say(EHLO)
        yield* sendMessage(dialog, "first@example", "short")
        yield* dialog.say("MAIL FROM:<big@example>\r\nRCPT TO:<to@example>\r\nDATA")
        dialog.peer.socket.write(`${"z".repeat(32 + 64 * 1024 + 10)}\r\n.\r\n`)
        expect(yield* dialog.reply()).toBe("552 Error: Too much mail data\r\n")
        yield* dialog.peer.until("the close", (p) => p.ended || p.closed)
        expect(dialog.rest).toBe("")
        yield* stillServes(other)
        expect(served.messages.map((m) => m.mailFrom)).toEqual(["first@example"])
      })))

  it.live("a command line over 512 bytes is 500, and the session goes on", () =>
    channel(base, [
      HELO,
      [`NOOP ${"x".repeat(600)}`, "500 Error: line too long\r\n"],
      [MAIL, ok],
      [RCPT, ok],
      ["DATA", "354 End data with <CR><LF>.<CR><LF>\r\n"],
      ["hi\r\n.", ok]
    ], (served) => expect(served.messages.map((m) => m.data)).toEqual(["hi"])))

  it.live("a command line over 64 KiB is 500, then the close: of that connection only, its mail kept", () =>
    withSmtp(base, (served) =>
      Effect.gen(function*() {
        const other = yield* served.connect
        const dialog = yield* served.connect
        yield* dialog.say(HELO)
        yield* sendMessage(dialog, "kept@example", "kept")
        dialog.peer.socket.write(`NOOP ${"x".repeat(70 * 1024)}\r\nNOOP\r\n`)
        expect(yield* dialog.reply()).toBe("500 Error: line too long\r\n")
        yield* dialog.peer.until("the close", (p) => p.ended || p.closed)
        // the NOOP after the long line is never answered
        expect(dialog.rest).toBe("")
        yield* stillServes(other)
        expect(served.messages.map((m) => m.data)).toEqual(["kept"])
        expect(yield* settleCount(served.server, 1)).toBe(1)
      })))

  it.live("NUL bytes in a command are data of the line: an unknown command, a HELO name; the session goes on", () =>
    channel(base, [
      ["NO\0OP", "500 Error: command \"NO\0OP\" not recognized\r\n"],
      ["\0", "500 Error: command \"\0\" not recognized\r\n"],
      ["HELO ex\0ample", "250 testhost\r\n"],
      // smtpd's address parser takes a control character as atext (a defect it notes, and accepts)
      ["MAIL FROM:<a\0b@example>", ok],
      [RCPT, ok],
      ["DATA", "354 End data with <CR><LF>.<CR><LF>\r\n"],
      ["nul \0 in data\r\n.", ok]
    ], (served) => expect(served.messages).toEqual([peerMessage("a\0b@example", ["spam@example"], "nul \0 in data")])))

  it.live("a peer that vanishes mid-DATA: its earlier message was delivered, the half message is not", () =>
    withSmtp(base, (served) =>
      Effect.gen(function*() {
        const other = yield* served.connect
        yield* other.say(HELO)
        const dialog = yield* served.connect
        yield* dialog.say(HELO)
        yield* sendMessage(dialog, "whole@example", "whole message")
        yield* dialog.say("MAIL FROM:<half@example>\r\nRCPT TO:<to@example>\r\nDATA")
        yield* dialog.say("half a message\r\nand more")
        dialog.peer.socket.destroy()
        expect(yield* settleCount(served.server, 1)).toBe(1)
        yield* stillServes(other)
        yield* sendMessage(other, "other@example", "from the other")
        expect(served.messages.map((m) => [m.mailFrom, m.data])).toEqual([
          ["whole@example", "whole message"],
          ["other@example", "from the other"]
        ])
      })))

  it.live("STARTTLS when no certificate is configured is an unknown command", () =>
    channel(base, [EHLO, ["STARTTLS", "500 Error: command \"STARTTLS\" not recognized\r\n"], ["NOOP", ok]]))
})

// ---------------------------------------------------------------------------------------------------------------
// TLS

const pems = () => certificates()

/** A TLS client over `socket` (or to `port`), trusting the test authority; resolves once secure. */
const tlsConnect = (options: { readonly socket: NodeStream.Duplex } | { readonly port: number }) =>
  tlsClient({
    ...("socket" in options ? { socket: options.socket } : { host: "127.0.0.1", port: options.port }),
    ca: pems().ca,
    servername: "localhost"
  })

const ehloTls = "250-testhost\r\n250-SIZE 33554432\r\n250-8BITMIME\r\n250-PIPELINING\r\n250 HELP\r\n"

describe("smtp example: TLS", () => {
  it.live("STARTTLS with pipelined bytes: the RSET after it never runs; EHLO over TLS offers no STARTTLS", () => {
    const tls: Chat.StartTls = { side: "server", key: pems().serverKey, cert: pems().serverCert }
    return withSmtp({ ...base, starttls: true }, (served) =>
      Effect.gen(function*() {
        const other = yield* served.connect
        const dialog = yield* served.connect
        yield* dialog.peer.write("EHLO example\r\n")
        expect(yield* dialog.reply()).toContain("250-STARTTLS\r\n250 HELP\r\n")
        expect(yield* dialog.say("MAIL FROM:<plain@example>")).toBe(ok)
        yield* dialog.peer.write("STARTTLS\r\nRSET\r\n")
        expect(yield* dialog.reply()).toBe("220 Ready to start TLS\r\n")
        const secure = new Dialog(new RawPeer(yield* tlsConnect({ socket: dialog.peer.socket }), false))
        yield* secure.peer.write("EHLO example\r\n")
        // the first thing over TLS is EHLO's answer: no 250 from the RSET, in either order
        expect(yield* secure.reply()).toBe(ehloTls)
        expect(yield* secure.say("STARTTLS")).toBe("554 Error: TLS already active\r\n")
        expect(yield* secure.say("HELP")).toBe(`250 Supported commands: ${HELP_LIST}\r\n`)
        // the MAIL before STARTTLS is forgotten (RFC 3207 4.2)
        expect(yield* secure.say("RCPT TO:<to@example>")).toBe("503 Error: need MAIL command\r\n")
        yield* sendMessage(secure, "secure@example", "over tls")
        expect(served.envelopes.map((e) => [e.mailFrom, e.tls])).toEqual([["secure@example", true]])
        expect(dialog.rest).toBe("")
        yield* stillServes(other)
      }), tls)
  })

  it.live("a plaintext client on an implicit-TLS port gets no SMTP reply; TLS clients are served", () =>
    Effect.scoped(Effect.gen(function*() {
      const dummy = dummyServer()
      const server = yield* ChatServer.make(
        Smtp({ ...base, starttls: true, implicitTls: true }, dummy.deliver),
        serverOptions
      )
      if (server.address._tag !== "Inet") return yield* Effect.die("not TCP")
      const port = server.address.port
      const plain = yield* rawConnect(port)
      yield* plain.write("EHLO example\r\n")
      yield* plain.until("the TLS listener to drop the plaintext client", (p) => p.ended || p.closed || !!p.error)
      expect(plain.text).not.toContain("220")
      expect(plain.text).not.toContain("250")
      const secure = new Dialog(new RawPeer(yield* tlsConnect({ port }), false))
      expect(yield* secure.reply()).toBe(GREETING)
      expect(yield* secure.say(EHLO)).toBe("250 HELP\r\n")
      expect(yield* secure.say("STARTTLS")).toBe("500 Error: command \"STARTTLS\" not recognized\r\n")
      yield* sendMessage(secure, "smtps@example", "implicit")
      expect(dummy.envelopes.map((e) => [e.mailFrom, e.tls])).toEqual([["smtps@example", true]])
    })).pipe(Effect.provide(Listener.layerTls({
      host: "127.0.0.1",
      port: 0,
      key: pems().serverKey,
      cert: pems().serverCert
    }))))
})

// ---------------------------------------------------------------------------------------------------------------
// Idle timeout, deliveries

describe("smtp example: idle timeout", () => {
  it.effect("an idle client gets 421 after the idle timeout, then the close", () =>
    Effect.gen(function*() {
      const dummy = dummyServer()
      const server = yield* ChatServer.make(Smtp(base, dummy.deliver), { idleTimeout: "10 seconds" })
      const client = yield* connectLines
      expect(yield* readLines(client, 1)).toEqual(["220 testhost effect-asynchat SMTP\r"])
      const rest = yield* Effect.forkChild(readAll(client))
      yield* TestClock.adjust("9 seconds")
      expect(yield* server.count).toBe(1)
      yield* TestClock.adjust("2 seconds")
      expect(yield* Fiber.join(rest)).toBe("421 testhost Error: timeout exceeded\r\n")
      expect(yield* server.count).toBe(0)
    }).pipe(Effect.provide(memory())))
})

describe("smtp example: deliveries", () => {
  it.effect("toMaildir writes into tmp, then renames into new, with a Return-Path", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "smtp-maildir-"))
      try {
        const name = yield* toMaildir(dir, envelopeOf("eggs@example", "Subject: hi\n\nbody"))
        const bounce = yield* toMaildir(dir, envelopeOf("<>", "bounce"))
        expect(Fs.readdirSync(Path.join(dir, "tmp"))).toEqual([])
        expect(Fs.readdirSync(Path.join(dir, "cur"))).toEqual([])
        expect(Fs.readdirSync(Path.join(dir, "new")).toSorted()).toEqual([name, bounce].toSorted())
        expect(Fs.readFileSync(Path.join(dir, "new", name), "utf8")).toBe(
          "Return-Path: <eggs@example>\nSubject: hi\n\nbody\n"
        )
        expect(Fs.readFileSync(Path.join(dir, "new", bounce), "utf8")).toBe("Return-Path: <>\nbounce\n")
      } finally {
        Fs.rmSync(dir, { recursive: true, force: true })
      }
    }))

  it.effect("toMaildir answers a Rejected 451 when it cannot write", () =>
    Effect.gen(function*() {
      const file = Path.join(Os.tmpdir(), `smtp-not-a-dir-${process.pid}`)
      Fs.writeFileSync(file, "")
      try {
        const rejected = yield* Effect.flip(toMaildir(file, envelopeOf("a@example", "x")))
        expect(rejected).toBeInstanceOf(Rejected)
        expect(rejected.reply).toMatch(/^451 Requested action aborted: /)
      } finally {
        Fs.rmSync(file, { force: true })
      }
    }))

  it.live("mailbox() streams the envelopes in order, as the server acknowledges them", () =>
    Effect.gen(function*() {
      const box = yield* mailbox(2)
      const taken = yield* Effect.forkChild(Stream.runCollect(Stream.take(box.envelopes, 3)))
      yield* Effect.scoped(Effect.gen(function*() {
        const server = yield* ChatServer.make(Smtp(base, box.deliver), serverOptions)
        if (server.address._tag !== "Inet") return yield* Effect.die("not TCP")
        const dialog = new Dialog(yield* rawConnect(server.address.port))
        expect(yield* dialog.reply()).toBe(GREETING)
        yield* dialog.say(HELO)
        for (const n of [1, 2, 3]) yield* sendMessage(dialog, `m${n}@example`, `message ${n}`)
      })).pipe(Effect.provide(Listener.layerTcp({ host: "127.0.0.1", port: 0 })))
      const envelopes = yield* Fiber.join(taken)
      expect(envelopes.map((e) => [e.mailFrom, latin1(e.data), e.recipients])).toEqual([
        ["m1@example", "message 1", ["to@example"]],
        ["m2@example", "message 2", ["to@example"]],
        ["m3@example", "message 3", ["to@example"]]
      ])
    }))
})
