/**
 * The smtp example as an operator runs it (`npm start -- smtp --port 0 ...`), with real mail clients that share
 * none of our code: swaks (plain, `--pipeline`, STARTTLS with `--tls`, implicit TLS with `--tls-on-connect`
 * against `--tls-only`), Python's smtplib with `starttls()`, `openssl s_client -starttls smtp` and curl's
 * `smtp://` with `--ssl-reqd`. Each client must report success and the server must print the message as smtpd's
 * DebuggingServer does (its Subject, body and `X-Peer: 127.0.0.1`), or, with `--maildir DIR`, file it in
 * `DIR/new`. TLS clients verify the server's certificate with the test CA (certificates made at test time).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { curl, python, tool } from "../tools.ts"
import { certificates, openssl } from "../transport-helpers.ts"
import { runProcess } from "./http-helpers.ts"
import { type Child, cli, listeningPort, spawn } from "./peers.ts"

const swaks = tool("swaks", ["--version"])

/** `npm start -- smtp --port 0` with `args`, its port, and its stdout to wait on. */
const smtp = (...args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const child = yield* cli("smtp", "--port", "0", "--hostname", "mx.test", ...args)
    const port = yield* listeningPort(child)
    return { child, port }
  })

/** The server with the test certificate: STARTTLS, or implicit TLS with `--tls-only`. */
const smtpWithTls = (...args: ReadonlyArray<string>) => {
  const pems = certificates()
  return Effect.map(
    smtp("--tls-key", `${pems.dir}/server.key`, "--tls-cert", `${pems.dir}/server.crt`, ...args),
    (server) => ({ ...server, ca: `${pems.dir}/ca.crt` })
  )
}

/** Waits until the server printed a message with `subject` and `body`, from 127.0.0.1; returns what it printed. */
const printed = (child: Child, subject: string, body: string) =>
  Effect.gen(function*() {
    yield* child.stdout.contains("------------ END MESSAGE ------------", "10 seconds")
    const text = child.stdout.text
    expect(text).toContain("---------- MESSAGE FOLLOWS ----------")
    expect(text).toContain(`Subject: ${subject}`)
    expect(text).toContain(body)
    expect(text).toContain("X-Peer: 127.0.0.1")
    return text
  })

/** swaks to 127.0.0.1:`port` with a Subject and body of our own; exits 0 when the server took the mail. */
const runSwaks = (port: number, subject: string, body: string, ...args: ReadonlyArray<string>) =>
  runProcess("swaks", [
    "--server",
    `127.0.0.1:${port}`,
    "--to",
    "you@example.com",
    "--from",
    "me@example.com",
    "--header",
    `Subject: ${subject}`,
    "--body",
    body,
    "--timeout",
    "10",
    ...args
  ], { timeout: "20 seconds" })

const SMTPLIB = `
import smtplib, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[2])
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10) as client:
    client.ehlo()
    client.starttls(context=context)
    client.ehlo()
    refused = client.sendmail("a@b.example", ["c@d.example"], "Subject: from smtplib\\r\\n\\r\\nhello from smtplib\\r\\n")
    print("sent", client.sock.version(), refused)
`

describe("smtp example with real clients", () => {
  ;(swaks.available ? it.live : it.live.skip)(
    `swaks delivers a message${swaks.skipReason}`,
    () =>
      Effect.scoped(Effect.gen(function*() {
        swaks.require()
        const { child, port } = yield* smtp()
        const result = yield* runSwaks(port, "swaks plain", "plain body from swaks")
        expect(result.code, result.stdout.toString() + result.stderr).toBe(0)
        expect(result.stdout.toString()).toContain("<-  250 OK")
        expect(result.stdout.toString()).toContain("<-  221 Bye")
        yield* printed(child, "swaks plain", "plain body from swaks")
      })),
    30_000
  )
  ;(swaks.available ? it.live : it.live.skip)(
    `swaks --pipeline delivers a message${swaks.skipReason}`,
    () =>
      Effect.scoped(Effect.gen(function*() {
        swaks.require()
        const { child, port } = yield* smtp()
        const result = yield* runSwaks(port, "swaks pipelined", "pipelined body", "--pipeline")
        const out = result.stdout.toString()
        expect(result.code, out + result.stderr).toBe(0)
        // swaks says when it pipelines; it refuses (non-zero exit) when PIPELINING is not advertised
        expect(out).toContain("250-PIPELINING")
        expect(out).toContain("<-  250 OK")
        yield* printed(child, "swaks pipelined", "pipelined body")
      })),
    30_000
  )
  ;(swaks.available && openssl.available ? it.live : it.live.skip)(
    `swaks --tls (STARTTLS), verifying the certificate${swaks.skipReason}${openssl.skipReason}`,
    () =>
      Effect.scoped(Effect.gen(function*() {
        swaks.require()
        const { ca, child, port } = yield* smtpWithTls()
        const result = yield* runSwaks(
          port,
          "swaks starttls",
          "body over starttls",
          "--tls",
          "--tls-verify",
          "--tls-ca-path",
          ca
        )
        const out = result.stdout.toString()
        expect(result.code, out + result.stderr).toBe(0)
        expect(out).toContain("250-STARTTLS")
        expect(out).toContain("<-  220 Ready to start TLS")
        expect(out).toMatch(/TLS started with cipher/)
        expect(out).toContain("<~  250 OK")
        yield* printed(child, "swaks starttls", "body over starttls")
      })),
    30_000
  )
  ;(swaks.available && openssl.available ? it.live : it.live.skip)(
    `swaks --tls-on-connect against --tls-only (implicit TLS)${swaks.skipReason}${openssl.skipReason}`,
    () =>
      Effect.scoped(Effect.gen(function*() {
        swaks.require()
        const { ca, child, port } = yield* smtpWithTls("--tls-only")
        const result = yield* runSwaks(
          port,
          "swaks smtps",
          "body over implicit tls",
          "--tls-on-connect",
          "--tls-verify",
          "--tls-ca-path",
          ca
        )
        const out = result.stdout.toString()
        expect(result.code, out + result.stderr).toBe(0)
        expect(out).toMatch(/TLS started with cipher/)
        // implicit TLS: STARTTLS is not offered
        expect(out).not.toContain("STARTTLS")
        expect(out).toContain("<~  250 OK")
        yield* printed(child, "swaks smtps", "body over implicit tls")
      })),
    30_000
  )
  ;(python.available && openssl.available ? it.live : it.live.skip)(
    `Python's smtplib with starttls(), verifying the certificate${python.skipReason}${openssl.skipReason}`,
    () =>
      Effect.scoped(Effect.gen(function*() {
        python.require()
        const { ca, child, port } = yield* smtpWithTls()
        const result = yield* runProcess("python3", ["-c", SMTPLIB, String(port), ca], { timeout: "20 seconds" })
        expect(result.code, result.stderr).toBe(0)
        expect(result.stdout.toString()).toMatch(/^sent TLSv1\.[23] \{\}/)
        yield* printed(child, "from smtplib", "hello from smtplib")
      })),
    30_000
  )
  ;(openssl.available ? it.live : it.live.skip)(
    `openssl s_client -starttls smtp: EHLO and QUIT over TLS${openssl.skipReason}`,
    () =>
      Effect.scoped(Effect.gen(function*() {
        openssl.require()
        const { ca, port } = yield* smtpWithTls()
        const client = yield* spawn("openssl", [
          "s_client",
          "-starttls",
          "smtp",
          "-connect",
          `127.0.0.1:${port}`,
          "-CAfile",
          ca,
          "-verify_return_error",
          "-quiet"
        ])
        yield* client.write("EHLO client.example\r\n")
        yield* client.stdout.contains("250 HELP\r\n", "10 seconds")
        yield* client.end("QUIT\r\n")
        yield* client.stdout.contains("221 Bye\r\n", "10 seconds")
        const exited = yield* client.exit("10 seconds")
        expect(exited).toMatchObject({ code: 0 })
        // after the upgrade: a fresh session that does not offer STARTTLS again
        expect(client.stdout.text).toBe(
          "250-mx.test\r\n250-SIZE 33554432\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-PIPELINING\r\n250 HELP\r\n221 Bye\r\n"
        )
        expect(exited.stderr).toMatch(/verify return:1/)
      })),
    30_000
  )
  ;(curl.available && openssl.available ? it.live : it.live.skip)(
    `curl smtp:// --ssl-reqd uploads a message over STARTTLS${curl.skipReason}${openssl.skipReason}`,
    () =>
      Effect.scoped(Effect.gen(function*() {
        curl.require()
        const { ca, child, port } = yield* smtpWithTls()
        const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "smtp-curl-"))
        yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true })))
        const file = Path.join(dir, "mail.txt")
        Fs.writeFileSync(file, "Subject: from curl\r\nFrom: a@b.example\r\n\r\nhello from curl\r\n.leading dot\r\n")
        const result = yield* runProcess("curl", [
          "-sS",
          "--max-time",
          "10",
          `smtp://127.0.0.1:${port}`,
          "--ssl-reqd",
          "--cacert",
          ca,
          "--mail-from",
          "a@b.example",
          "--mail-rcpt",
          "c@d.example",
          "--upload-file",
          file
        ], { timeout: "20 seconds" })
        expect(result.code, result.stderr).toBe(0)
        const text = yield* printed(child, "from curl", "hello from curl")
        // curl dot-stuffs, the server unstuffs
        expect(text).toContain("\n.leading dot\n")
      })),
    30_000
  )
  ;(swaks.available ? it.live : it.live.skip)(
    `--maildir DIR files swaks's message in DIR/new${swaks.skipReason}`,
    () =>
      Effect.scoped(Effect.gen(function*() {
        swaks.require()
        const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "smtp-maildir-"))
        yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true })))
        const { port } = yield* smtp("--maildir", dir)
        const result = yield* runSwaks(port, "to the maildir", "filed body")
        expect(result.code, result.stdout.toString() + result.stderr).toBe(0)
        // the 250 comes once the file is in new/: swaks has succeeded, so it is there now
        const files = () => Fs.existsSync(Path.join(dir, "new")) ? Fs.readdirSync(Path.join(dir, "new")) : []
        expect(files()).toHaveLength(1)
        const mail = Fs.readFileSync(Path.join(dir, "new", files()[0]), "utf8")
        expect(mail).toMatch(/^Return-Path: <me@example\.com>\n/)
        expect(mail).toContain("Subject: to the maildir")
        expect(mail).toContain("filed body")
        expect(Fs.readdirSync(Path.join(dir, "tmp"))).toEqual([])
      })),
    30_000
  )
})
