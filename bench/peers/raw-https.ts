/**
 * The floor for the tls section of `bench/servers.ts`: bench/peers/raw-http.ts's server over `node:tls`, with
 * the key and certificate the section makes: every complete request head answered with the bytes
 * `examples/http11.ts` sends, all answers to one decrypted chunk in one write. What is left is the cost of
 * Node's TLS sockets.
 *
 * Run: node bench/peers/raw-https.ts PORT KEY CERT
 */
import { readFileSync } from "node:fs"
import { createServer } from "node:tls"
import { reader } from "./raw-http.ts"

const [port, key, cert] = [Number(process.argv[2] ?? 8444), process.argv[3], process.argv[4]]
if (!(port > 0) || key === undefined || cert === undefined) {
  console.error("usage: node bench/peers/raw-https.ts PORT KEY CERT")
  process.exit(2)
}
createServer({ key: readFileSync(key), cert: readFileSync(cert) }, (socket) => {
  socket.on("error", () => socket.destroy())
  socket.on("data", reader(socket))
}).listen(port, "127.0.0.1", () => console.log(`raw-https listening on 127.0.0.1:${port}`))
