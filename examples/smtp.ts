/**
 * smtp — the program asynchat was best known for: a port of CPython 3.11's `smtpd.SMTPChannel` and
 * `SMTPServer` (`python3 -m smtpd -n -c DebuggingServer`), replies worded byte for byte as smtpd words them: HELO,
 * EHLO (SIZE, 8BITMIME, SMTPUTF8, PIPELINING, and STARTTLS when it has a certificate), MAIL FROM with SIZE= and
 * BODY=, RCPT TO, DATA with dot-unstuffing, RSET, NOOP, QUIT, VRFY, HELP, EXPN, smtpd's 500/501/502/503/552/554/555
 * replies and its limits (512-byte command lines, extended for MAIL's parameters; the message size). The session
 * is a pure `Framing.Machine` (`SmtpSession`): command lines, then data lines, then command lines; STARTTLS is
 * its `Framing.pause`, so the plaintext after it is never read (RFC 3207). Received messages come out as a
 * Stream of envelopes (`mailbox`), which the command line prints as smtpd's DebuggingServer does; or, with
 * `--maildir DIR`, each is written to a Maildir before its `250`, so an acknowledged message is on disk.
 *
 * Where it differs from smtpd, on purpose: a message whose first data line is the lone dot ends there (smtpd
 * waits for a second `CRLF.CRLF`); after `552 Too much mail data` the session is back to commands (smtpd stays in
 * DATA, reading the next commands as mail); a command line that is not UTF-8 gets `500 Error: bad syntax`, and
 * a reply is sent as UTF-8 (smtpd closes the connection on either); an address its email parser raises on (`a@`,
 * `@x`, `<<a@b>>`) is answered as no address (501, 502), where smtpd closes the connection; a command line over
 * 64 KiB, or a data line longer than the size limit, is answered (500, 552) and the connection closed, since it is
 * not buffered; an idle client gets `421` after `--idle-timeout` (smtpd waits forever).
 *
 * Try it: npm start -- smtp --port 8025, then: swaks --server 127.0.0.1:8025 --to you@example.com
 */
import { Effect, Option, Queue, Stream } from "effect"
import { Chat, type ChatError, type ChatServer, Framing, Protocol, Terminator } from "effect-asynchat"
import { Command, Flag } from "effect/cli"
import { Buffer } from "node:buffer"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Shared from "./shared.ts"

/** smtpd's default bound on a message: 32 MiB. */
export const DATA_SIZE_DEFAULT = 33554432

/** What a session serves. */
export interface Options {
  /** The name it greets with and answers HELO/EHLO with (smtpd's `socket.getfqdn()`). */
  readonly hostname: string
  /** The largest message accepted, in bytes; 0 for no bound (smtpd's `data_size_limit`). */
  readonly dataSizeLimit: number
  /** Advertises and accepts SMTPUTF8 (smtpd's `enable_SMTPUTF8`, its `-u`). */
  readonly enableSMTPUTF8: boolean
  /** STARTTLS is offered when the server has a certificate. */
  readonly starttls: boolean
  /** The connection is over TLS from the start (implicit TLS, port 465): STARTTLS is not offered. */
  readonly implicitTls: boolean
}

/** A received message: smtpd's `process_message(peer, mailfrom, rcpttos, data, mail_options, rcpt_options)`. */
export interface Envelope {
  readonly peer: Chat.Address
  readonly mailFrom: string
  readonly recipients: ReadonlyArray<string>
  /** The data lines, dot-unstuffed, joined by `\n` (smtpd's `received_data`). */
  readonly data: Uint8Array
  readonly mailOptions: ReadonlyArray<string>
  readonly rcptOptions: ReadonlyArray<string>
  /** The message came over TLS. */
  readonly tls: boolean
}

/** What the session machine hands its connection: a reply, a message to deliver, an upgrade, the end. */
export type Event =
  | { readonly _tag: "Reply"; readonly text: string }
  | {
    readonly _tag: "Message"
    readonly mailFrom: string
    readonly recipients: ReadonlyArray<string>
    readonly data: Uint8Array
    readonly mailOptions: ReadonlyArray<string>
    readonly rcptOptions: ReadonlyArray<string>
  }
  | { readonly _tag: "StartTls" }
  | { readonly _tag: "Quit" }

/** smtpd's channel state: what HELO/EHLO, MAIL and RCPT said, and whether DATA is being read. */
export interface Session {
  readonly greeting: string
  readonly extended: boolean
  readonly tls: boolean
  readonly mailFrom: string | undefined
  readonly recipients: ReadonlyArray<string>
  readonly mailOptions: ReadonlyArray<string>
  readonly rcptOptions: ReadonlyArray<string>
  readonly requireSMTPUTF8: boolean
  /** Reading DATA: the lines so far (copies), their size as smtpd counts it, and whether it passed the limit. */
  readonly data: Data | undefined
}

/**
 * The message being read: its parts (the data lines, dot-unstuffed, with the newlines between them) and its size
 * as smtpd counts it. Appended to in place, one line at a time: copying the session per data line would make a
 * message cost the square of its lines. Only its own session holds it.
 */
export class Data {
  readonly parts: Array<Uint8Array> = []
  /** The lines and the CRLFs between them; -2 before the first line. */
  size = -2
}

const COMMAND_SIZE_LIMIT = 512
/** How long a command line may grow before it is refused without being read to its end. */
export const MAX_COMMAND_LINE = 64 * 1024
/** A data line's bound when messages are not bounded. */
const MAX_DATA_LINE = 1024 * 1024

const fresh = (tls: boolean): Session => ({
  greeting: "",
  extended: false,
  tls,
  mailFrom: undefined,
  recipients: [],
  mailOptions: [],
  rcptOptions: [],
  requireSMTPUTF8: false,
  data: undefined
})

/** smtpd's `_set_post_data_state` (and `_set_rset_state`: nothing more is kept between messages here). */
const reset = (s: Session): Session => ({
  ...s,
  mailFrom: undefined,
  recipients: [],
  requireSMTPUTF8: false,
  data: undefined
})

const reply = (text: string): Event => ({ _tag: "Reply", text })

// Python's str.strip()/split() whitespace
const PY_SPACE = "[ \\t\\n\\r\\x0b\\x0c\\x1c-\\x1f\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
const STRIP = new RegExp(`^${PY_SPACE}+|${PY_SPACE}+$`, "g")
const LSTRIP = new RegExp(`^${PY_SPACE}+`)
const SPLIT = new RegExp(`${PY_SPACE}+`)
const strip = (s: string) => s.replace(STRIP, "")
const split = (s: string): Array<string> => {
  const t = strip(s)
  return t === "" ? [] : t.split(SPLIT)
}

// atext as email._header_value_parser takes it: any character but its specials and space/tab (non-ASCII and
// control characters too: it notes those as defects, and accepts them)
const ATEXT = /^[^()<>@,:;.\\"[\] \t]+(?:\.[^()<>@,:;.\\"[\] \t]+)*/
/** An obs-local-part as the email parser takes it (with a defect, not an error): dots leading, trailing, doubled. */
const OBS_LOCAL = /^(?:[^()<>@,:;.\\"[\] \t]|\.)+/
const DOT_ATOM_ENDS = /[()<>@,:;\\"[\] \t]/

/** `email._header_value_parser`'s quoting of a local part that is no dot-atom. */
const quoteLocal = (local: string) => DOT_ATOM_ENDS.test(local) ? `"${local.replace(/(["\\])/g, "\\$1")}"` : local

/** One word of a local part at the start of `v`: a quoted string (maybe unterminated) or an atom. */
const word = (v: string): readonly [string, string] | undefined => {
  if (v.startsWith("\"")) {
    let out = ""
    for (let i = 1; i < v.length; i++) {
      const c = v[i]
      if (c === "\\" && i + 1 < v.length) out += v[++i]
      else if (c === "\"") return [out, v.slice(i + 1)]
      else out += c
    }
    // the end of the line inside the quoted string: a defect to the email parser, not an error
    return [out, ""]
  }
  const atom = OBS_LOCAL.exec(v)
  return atom === null ? undefined : [atom[0], v.slice(atom[0].length)]
}

/**
 * The local part at the start of `value`, unquoted, and what follows it; undefined when there is none. As the
 * email parser reads it: words (quoted strings, atoms with obsolete dots) separated by spaces make one local
 * part, joined by one space (`a  b@c` is `"a b"@c`).
 */
const localPart = (value: string): readonly [string, string] | undefined => {
  let v = value.replace(LSTRIP, "")
  const first = word(v)
  if (first === undefined) return undefined
  let out = first[0]
  v = first[1]
  for (;;) {
    const spaced = v.replace(LSTRIP, "")
    const next = word(spaced)
    if (next === undefined) return [out, v]
    out += spaced.length < v.length ? ` ${next[0]}` : next[0]
    v = next[1]
  }
}

/** An addr-spec at the start of `value`: the address as smtpd records it, and what follows. */
const addrSpec = (value: string): readonly [string, string] => {
  const local = localPart(value)
  if (local === undefined) return ["", ""]
  const [name, afterLocal] = local
  const lp = quoteLocal(name)
  const rest = afterLocal.replace(LSTRIP, "")
  if (!rest.startsWith("@")) return [lp, rest]
  const domain = rest.slice(1).replace(LSTRIP, "")
  const literal = /^\[[^\]]*\]/.exec(domain)
  const atom = literal ?? ATEXT.exec(domain)
  if (atom === null) return ["", ""]
  return [`${lp}@${atom[0]}`, domain.slice(atom[0].length).replace(LSTRIP, "")]
}

/** smtpd's `_getaddr`: the address of a MAIL FROM / RCPT TO / VRFY argument (`<...>` or bare), and the rest. */
export const getAddress = (arg: string | undefined): readonly [string, string] => {
  if (arg === undefined || arg === "") return ["", ""]
  const value = arg.replace(LSTRIP, "")
  if (!value.startsWith("<")) return addrSpec(arg)
  if (value[1] === ">") return ["<>", value.slice(2)]
  const [address, rest] = addrSpec(value.slice(1))
  if (address === "") return ["", ""]
  const after = rest.replace(LSTRIP, "")
  return [address, after.startsWith(">") ? after.slice(1) : after]
}

/** smtpd's `_getparams`: `KEY=value` / `KEY` parameters, or undefined when one is not RFC 1869 syntax. */
const getParams = (params: ReadonlyArray<string>): Map<string, string | true> | undefined => {
  const result = new Map<string, string | true>()
  for (const param of params) {
    const eq = param.indexOf("=")
    const key = eq < 0 ? param : param.slice(0, eq)
    const value = eq < 0 ? "" : param.slice(eq + 1)
    if (!/^[\p{L}\p{N}]+$/u.test(key) || (eq >= 0 && value === "")) return undefined
    result.set(key, eq < 0 ? true : value)
  }
  return result
}

/** smtpd's `_strip_command_keyword`. */
const stripKeyword = (keyword: string, arg: string): string =>
  arg.slice(0, keyword.length).toUpperCase() === keyword ? strip(arg.slice(keyword.length)) : ""

const utf8 = new TextDecoder("utf-8", { fatal: true })
const DOT = 0x2e
const NEWLINE = Buffer.from("\n")

/**
 * One SMTP command line, as smtpd's `found_terminator` and `smtp_*` methods handle it: the session after it, and
 * what to do.
 */
const onCommand = (options: Options, s: Session, bytes: Uint8Array): Framing.Step<Session, Event, never> => {
  if (bytes.length === 0) return Framing.next(s, reply("500 Error: bad syntax"))
  let line: string
  try {
    line = utf8.decode(bytes)
  } catch {
    return Framing.next(s, reply("500 Error: bad syntax"))
  }
  const i = line.indexOf(" ")
  const name = (i < 0 ? line : line.slice(0, i)).toUpperCase()
  const arg = i < 0 ? undefined : strip(line.slice(i + 1))
  const limit = s.extended ? commandLimit(options, name) : COMMAND_SIZE_LIMIT
  if (bytes.length > limit) return Framing.next(s, reply("500 Error: line too long"))
  const extended = " [SP <mail-parameters>]"
  switch (name) {
    case "HELO":
    case "EHLO": {
      if (!arg) return Framing.next(s, reply(`501 Syntax: ${name} hostname`))
      if (s.greeting) return Framing.next(s, reply("503 Duplicate HELO/EHLO"))
      const next: Session = { ...reset(s), greeting: arg, extended: s.extended || name === "EHLO" }
      if (name === "HELO") return Framing.next(next, reply(`250 ${options.hostname}`))
      const lines = [`250-${options.hostname}`]
      if (options.dataSizeLimit) lines.push(`250-SIZE ${options.dataSizeLimit}`)
      lines.push("250-8BITMIME")
      if (options.enableSMTPUTF8) lines.push("250-SMTPUTF8")
      lines.push("250-PIPELINING")
      if (offersStartTls(options, s)) lines.push("250-STARTTLS")
      lines.push("250 HELP")
      return Framing.next(next, ...lines.map(reply))
    }
    case "NOOP":
      return Framing.next(s, reply(arg ? "501 Syntax: NOOP" : "250 OK"))
    case "QUIT":
      return Framing.next(s, reply("221 Bye"), { _tag: "Quit" })
    case "HELP":
      return Framing.next(s, reply(help(options, s, arg)))
    case "VRFY": {
      if (!arg) return Framing.next(s, reply("501 Syntax: VRFY <address>"))
      return Framing.next(
        s,
        reply(
          getAddress(arg)[0]
            ? "252 Cannot VRFY user, but will accept message and attempt delivery"
            : `502 Could not VRFY ${arg}`
        )
      )
    }
    case "MAIL": {
      if (!s.greeting) return Framing.next(s, reply("503 Error: send HELO first"))
      const syntax = reply(`501 Syntax: MAIL FROM: <address>${s.extended ? extended : ""}`)
      if (arg === undefined) return Framing.next(s, syntax)
      const [address, rest] = getAddress(stripKeyword("FROM:", arg))
      if (!address || (!s.extended && rest)) return Framing.next(s, syntax)
      if (s.mailFrom) return Framing.next(s, reply("503 Error: nested MAIL command"))
      const mailOptions = split(rest.toUpperCase())
      const params = getParams(mailOptions)
      if (params === undefined) return Framing.next(s, syntax)
      const body = params.get("BODY") ?? "7BIT"
      params.delete("BODY")
      if (body !== "7BIT" && body !== "8BITMIME") {
        return Framing.next(s, reply("501 Error: BODY can only be one of 7BIT, 8BITMIME"))
      }
      let requireSMTPUTF8 = false
      if (options.enableSMTPUTF8 && params.has("SMTPUTF8")) {
        const smtputf8 = params.get("SMTPUTF8")
        params.delete("SMTPUTF8")
        if (smtputf8 !== true) return Framing.next(s, reply("501 Error: SMTPUTF8 takes no arguments"))
        requireSMTPUTF8 = true
      }
      const size = params.get("SIZE")
      params.delete("SIZE")
      if (size !== undefined) {
        if (size === true || !/^[0-9]+$/.test(size)) return Framing.next(s, syntax)
        if (options.dataSizeLimit && Number(size) > options.dataSizeLimit) {
          return Framing.next(s, reply("552 Error: message size exceeds fixed maximum message size"))
        }
      }
      if (params.size > 0) {
        return Framing.next(s, reply("555 MAIL FROM parameters not recognized or not implemented"))
      }
      return Framing.next({ ...s, mailFrom: address, mailOptions, requireSMTPUTF8 }, reply("250 OK"))
    }
    case "RCPT": {
      if (!s.greeting) return Framing.next(s, reply("503 Error: send HELO first"))
      if (!s.mailFrom) return Framing.next(s, reply("503 Error: need MAIL command"))
      const syntax = reply(`501 Syntax: RCPT TO: <address>${s.extended ? extended : ""}`)
      if (arg === undefined) return Framing.next(s, syntax)
      const [address, rest] = getAddress(stripKeyword("TO:", arg))
      if (!address || (!s.extended && rest)) return Framing.next(s, syntax)
      const rcptOptions = split(rest.toUpperCase())
      const params = getParams(rcptOptions)
      if (params === undefined) return Framing.next(s, syntax)
      if (params.size > 0) {
        return Framing.next(s, reply("555 RCPT TO parameters not recognized or not implemented"))
      }
      return Framing.next({ ...s, recipients: [...s.recipients, address], rcptOptions }, reply("250 OK"))
    }
    case "RSET":
      return arg ? Framing.next(s, reply("501 Syntax: RSET")) : Framing.next(reset(s), reply("250 OK"))
    case "DATA": {
      if (!s.greeting) return Framing.next(s, reply("503 Error: send HELO first"))
      if (s.recipients.length === 0) return Framing.next(s, reply("503 Error: need RCPT command"))
      if (arg) return Framing.next(s, reply("501 Syntax: DATA"))
      return Framing.next({ ...s, data: new Data() }, reply("354 End data with <CR><LF>.<CR><LF>"))
    }
    case "EXPN":
      return Framing.next(s, reply("502 EXPN not implemented"))
    case "STARTTLS": {
      if (options.starttls && !options.implicitTls) {
        if (s.tls) return Framing.next(s, reply("554 Error: TLS already active"))
        if (arg) return Framing.next(s, reply("501 Syntax: STARTTLS"))
        // RFC 3207 4.2: everything the client said before is forgotten; the bytes after it wait uncut
        return Framing.pause(fresh(true), reply("220 Ready to start TLS"), { _tag: "StartTls" })
      }
      break
    }
  }
  return Framing.next(s, reply(`500 Error: command "${name}" not recognized`))
}

const offersStartTls = (options: Options, s: Session) => options.starttls && !options.implicitTls && !s.tls

/** smtpd's `command_size_limits`, as EHLO extends them: MAIL takes SIZE= (26 bytes) and SMTPUTF8 (10). */
const commandLimit = (options: Options, name: string) =>
  name === "MAIL"
    ? COMMAND_SIZE_LIMIT + (options.dataSizeLimit ? 26 : 0) + (options.enableSMTPUTF8 ? 10 : 0)
    : COMMAND_SIZE_LIMIT

const help = (options: Options, s: Session, arg: string | undefined): string => {
  const commands = `EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY${offersStartTls(options, s) ? " STARTTLS" : ""}`
  if (!arg) return `250 Supported commands: ${commands}`
  const extended = s.extended ? " [SP <mail-parameters>]" : ""
  switch (arg.toUpperCase()) {
    case "EHLO":
      return "250 Syntax: EHLO hostname"
    case "HELO":
      return "250 Syntax: HELO hostname"
    case "MAIL":
      return `250 Syntax: MAIL FROM: <address>${extended}`
    case "RCPT":
      return `250 Syntax: RCPT TO: <address>${extended}`
    case "DATA":
      return "250 Syntax: DATA"
    case "RSET":
      return "250 Syntax: RSET"
    case "NOOP":
      return "250 Syntax: NOOP"
    case "QUIT":
      return "250 Syntax: QUIT"
    case "VRFY":
      return "250 Syntax: VRFY <address>"
    case "STARTTLS":
      if (offersStartTls(options, s)) return "250 Syntax: STARTTLS"
  }
  return `501 Supported commands: ${commands}`
}

/**
 * One data line. The lone dot ends the message: smtpd's `552` when it grew past the limit, else the message
 * (its lines dot-unstuffed, joined by `\n`). Its size is counted as smtpd counts its data: the lines and the
 * CRLFs between them; past the limit, lines are counted, not kept.
 */
const dataLine = (options: Options, s: Session, bytes: Uint8Array): Framing.Step<Session, Event, never> => {
  const data = s.data!
  if (bytes.length === 1 && bytes[0] === DOT) {
    if (options.dataSizeLimit && data.size > options.dataSizeLimit) {
      return Framing.next(reset(s), reply("552 Error: Too much mail data"))
    }
    return Framing.next(reset(s), {
      _tag: "Message",
      mailFrom: s.mailFrom!,
      recipients: s.recipients,
      data: Buffer.concat(data.parts),
      mailOptions: s.mailOptions,
      rcptOptions: s.rcptOptions
    })
  }
  data.size += 2 + bytes.length
  // past the limit, lines are counted, not kept
  if (options.dataSizeLimit > 0 && data.size > options.dataSizeLimit) return Framing.next(s)
  if (data.parts.length > 0) data.parts.push(NEWLINE)
  // a copy: a frame is a view of the read buffer
  data.parts.push(bytes.length > 0 && bytes[0] === DOT ? bytes.slice(1) : bytes.slice())
  return Framing.next(s)
}

/**
 * The SMTP session as a pure machine: command lines (bounded at 64 KiB; smtpd's own limits answered with 500),
 * then, after `354`, data lines (bounded by the message's limit and 64 KiB more, so that a line just over it is
 * answered 552 and the session goes on) until the lone dot.
 */
export const SmtpSession = (options: Options) =>
  Framing.machine<Session, Event>({
    initial: fresh(options.implicitTls),
    terminator: () => Terminator.crlf,
    maxFrameLength: (s) =>
      s.data === undefined
        ? MAX_COMMAND_LINE
        : options.dataSizeLimit > 0
        ? options.dataSizeLimit + MAX_COMMAND_LINE
        : MAX_DATA_LINE,
    step: (s, frame) => s.data === undefined ? onCommand(options, s, frame.bytes) : dataLine(options, s, frame.bytes)
  })

/** What a delivery may answer instead of `250 OK`: smtpd's `process_message` returning a status. */
export class Rejected {
  readonly _tag = "Rejected"
  readonly reply: string
  constructor(reply: string) {
    this.reply = reply
  }
}

/**
 * The SMTP server: greets, runs the session, and hands each message to `deliver`, answering `250 OK` once it is
 * done (its `Rejected` reply otherwise), so that a message is acknowledged only once it is delivered. STARTTLS
 * upgrades with `tls`. An over-long line is answered, then the connection closed; an idle one gets `421`.
 */
export const Smtp = <R>(
  options: Options,
  deliver: (envelope: Envelope) => Effect.Effect<void, Rejected, R>,
  tls?: Chat.StartTls
) =>
  Protocol.forEach<Session, Event, never, ChatError.ChatError, R | Chat.Chat>(
    SmtpSession(options),
    Effect.gen(function*() {
      const chat = yield* Chat.Chat
      yield* chat.push(`220 ${options.hostname} effect-asynchat SMTP\r\n`)
      return (event: Event) => {
        switch (event._tag) {
          case "Reply":
            return chat.push(event.text, "\r\n")
          case "Quit":
            return chat.closeWhenDone
          case "StartTls":
            return tls === undefined ? chat.close : Effect.asVoid(chat.startTls(tls))
          case "Message":
            return deliver({
              peer: chat.remoteAddress,
              mailFrom: event.mailFrom,
              recipients: event.recipients,
              data: event.data,
              mailOptions: event.mailOptions,
              rcptOptions: event.rcptOptions,
              tls: chat.tls !== undefined
            }).pipe(
              Effect.andThen(chat.push("250 OK\r\n")),
              Effect.catch((rejected) => chat.push(rejected.reply, "\r\n"))
            )
        }
      }
    })
  ).pipe(
    Protocol.mapHandler((handler) =>
      handler.pipe(
        Effect.catchReason("ChatError", "FrameTooLong", (reason) =>
          Chat.push(
            reason.limit === MAX_COMMAND_LINE ? "500 Error: line too long\r\n" : "552 Error: Too much mail data\r\n"
          )),
        Effect.catchReason(
          "ChatError",
          "IdleTimeout",
          () => Chat.push(`421 ${options.hostname} Error: timeout exceeded\r\n`)
        )
      )
    )
  )

/**
 * A bounded mailbox between the server and whoever takes the mail: `deliver` (for `Smtp`) puts a message in,
 * waiting while the mailbox is full (the client waits for its `250`), and `envelopes` is the Stream of them.
 */
export const mailbox = (capacity = 64) =>
  Effect.map(Queue.bounded<Envelope>(capacity), (queue) => ({
    deliver: (envelope: Envelope) => Queue.offer(queue, envelope).pipe(Effect.asVoid),
    envelopes: Stream.fromQueue(queue)
  }))

/** An envelope as smtpd's DebuggingServer prints it (with `decode_data`): the peer after the headers. */
export const debugging = (envelope: Envelope): string => {
  const out = ["---------- MESSAGE FOLLOWS ----------"]
  if (envelope.mailOptions.length > 0) out.push(`mail options: ${pyList(envelope.mailOptions)}`)
  if (envelope.rcptOptions.length > 0) out.push(`rcpt options: ${pyList(envelope.rcptOptions)}\n`)
  let inHeaders = true
  const peer = envelope.peer._tag === "Inet" ? envelope.peer.host : Chat.formatAddress(envelope.peer)
  const lines = Buffer.from(envelope.data).toString("utf8").split(/\r\n|\r|\n/)
  // as str.splitlines(): a final line break ends the last line and starts no empty one ("" has no lines)
  if (lines[lines.length - 1] === "") lines.pop()
  for (const line of lines) {
    if (inHeaders && line === "") {
      out.push(`X-Peer: ${peer}`)
      inHeaders = false
    }
    out.push(line)
  }
  out.push("------------ END MESSAGE ------------")
  return out.join("\n")
}

const pyList = (items: ReadonlyArray<string>) => `[${items.map((item) => `'${item}'`).join(", ")}]`

let delivered = 0

/**
 * Writes `envelope` into the Maildir at `dir` (its `tmp`, `new` and `cur` made when missing): written to `tmp`,
 * then renamed into `new`, so a reader never sees half a message. A `Return-Path` header says the sender.
 */
export const toMaildir = (dir: string, envelope: Envelope) =>
  Effect.tryPromise({
    try: async () => {
      for (const sub of ["tmp", "new", "cur"]) await Fs.promises.mkdir(Path.join(dir, sub), { recursive: true })
      const name = `${Date.now()}.${process.pid}_${++delivered}.${Os.hostname()}`
      const header = Buffer.from(`Return-Path: <${envelope.mailFrom === "<>" ? "" : envelope.mailFrom}>\n`)
      await Fs.promises.writeFile(Path.join(dir, "tmp", name), Buffer.concat([header, envelope.data, NEWLINE]))
      await Fs.promises.rename(Path.join(dir, "tmp", name), Path.join(dir, "new", name))
      return name
    },
    catch: (cause) => new Rejected(`451 Requested action aborted: ${(cause as Error).message}`)
  })

/** smtpd has no idle timeout; RFC 5321 4.5.3.2 asks a server for 5 minutes at least. */
export const serverOptions: ChatServer.Options = { maxFrameLength: MAX_COMMAND_LINE }

const flags = {
  ...Shared.serverFlags(8025, serverOptions),
  hostname: Flag.String("hostname").pipe(
    Flag.withDescription("The name to greet with (default this host's name)"),
    Flag.withDefault(Os.hostname())
  ),
  size: Flag.Int("size").pipe(
    Flag.withDescription(`The largest message accepted, in bytes; 0 for no bound (default ${DATA_SIZE_DEFAULT})`),
    Flag.withDefault(DATA_SIZE_DEFAULT)
  ),
  maildir: Flag.String("maildir").pipe(
    Flag.withMetavar("dir"),
    Flag.withDescription("Write each message to this Maildir instead of printing it"),
    Flag.optional
  ),
  tlsOnly: Flag.Boolean("tls-only").pipe(
    Flag.withDescription("With --tls-key/--tls-cert: implicit TLS (SMTPS) instead of STARTTLS"),
    Flag.withDefault(false)
  )
}

/** Runs the server: STARTTLS with the TLS files, or implicit TLS with `--tls-only`; messages printed or filed. */
export const run = (
  flags: Shared.ServerFlags & {
    readonly hostname: string
    readonly size: number
    readonly maildir: Option.Option<string>
    readonly tlsOnly: boolean
  }
) =>
  Effect.gen(function*() {
    const pems = yield* Shared.readTlsFiles(flags)
    const options: Options = {
      hostname: flags.hostname,
      dataSizeLimit: flags.size,
      enableSMTPUTF8: true,
      starttls: pems !== undefined && !flags.tlsOnly,
      implicitTls: pems !== undefined && flags.tlsOnly
    }
    const tls: Chat.StartTls | undefined = pems === undefined ? undefined : { side: "server", ...pems }
    // Printed: the Stream of envelopes, acknowledged once in the mailbox. Filed: acknowledged once the file is in
    // the Maildir's new/, so a 250 never names a message a crash could lose; a failed write is the client's 451.
    const deliver = yield* Option.match(flags.maildir, {
      onNone: () =>
        Effect.gen(function*() {
          const box = yield* mailbox()
          yield* Effect.forkScoped(
            Stream.runForEach(box.envelopes, (envelope) => Effect.sync(() => console.log(debugging(envelope))))
          )
          return box.deliver
        }),
      onSome: (dir) =>
        Effect.succeed((envelope: Envelope) =>
          Effect.flatMap(toMaildir(dir, envelope), (name) => Effect.logInfo(`delivered ${name}`))
        )
    })
    return yield* Shared.serveTcp(Smtp(options, deliver, tls), {
      ...flags,
      ...(flags.tlsOnly ? {} : { tlsKey: Option.none(), tlsCert: Option.none() }),
      name: "smtp",
      tryIt: (host, port) =>
        pems === undefined
          ? [`swaks --server ${host}:${port} --to you@example.com`]
          : flags.tlsOnly
          ? [`swaks --server ${host}:${port} --tls-on-connect --to you@example.com`]
          : [`swaks --server ${host}:${port} --tls --to you@example.com`],
      server: Shared.withLimits(serverOptions, flags)
    })
  }).pipe(Effect.scoped)

/** `npm start -- smtp [--port N] [--tls-key F --tls-cert F [--tls-only]] [--maildir DIR] [--size N]` */
export const command = Command.make("smtp", flags, run).pipe(
  Shared.withTelemetry,
  Command.withDescription(
    "CPython's smtpd (DebuggingServer) over asynchat's heir: ESMTP, pipelining, STARTTLS, --maildir"
  )
)
