"""The CPython peer for the line-echo section of bench/servers.ts: asynchat's own idiom, an async_chat with
set_terminator(b"\n") that collects a line and pushes it back in found_terminator, served by asyncore.loop
(poll, which is cheaper than select's default).

Run: python3 bench/peers/asynchat_line_echo.py PORT
"""

import socket
import sys
import warnings

with warnings.catch_warnings():
    # asyncore and asynchat are deprecated (removed in 3.12); the warning is noise here
    warnings.simplefilter("ignore", DeprecationWarning)
    import asynchat
    import asyncore


class LineEcho(asynchat.async_chat):
    def __init__(self, sock):
        asynchat.async_chat.__init__(self, sock)
        self.buffer = []
        self.set_terminator(b"\n")

    def collect_incoming_data(self, data):
        self.buffer.append(data)

    def found_terminator(self):
        line = b"".join(self.buffer)
        self.buffer = []
        self.push(line + b"\n")


class Server(asyncore.dispatcher):
    def __init__(self, port):
        asyncore.dispatcher.__init__(self)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.set_reuse_addr()
        self.bind(("127.0.0.1", port))
        self.listen(1024)

    def handle_accepted(self, sock, addr):
        LineEcho(sock)


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 7002
    Server(port)
    print(f"asynchat-line-echo listening on 127.0.0.1:{port}", flush=True)
    asyncore.loop(timeout=1, use_poll=True)
