"""Oracle for test/Framing.cpython.test.ts: CPython's own asynchat framing, driven without a socket.

stdin:  JSON array of {"chunks": [base64, ...], "schedule": [terminator, ...]}, where a terminator is
        {"delimiter": base64} | {"length": n} (n >= 1) | {"none": true}.
stdout: JSON array of {"frames": [base64, ...], "rest": base64}, or {"error": traceback} for a case that raised.

Frame i is cut with schedule[min(i, len - 1)]; the next terminator is set inside found_terminator, as asynchat
users do. "rest" is what was collected but never terminated, plus a delimiter prefix held back in ac_in_buffer.
With --check it only verifies that asynchat imports (the test uses it to decide between running and skipping).
"""

import base64
import json
import sys
import traceback
import warnings

with warnings.catch_warnings():
    # asynchat and asyncore are deprecated (removed in 3.12); the warning is noise on stderr here
    warnings.simplefilter("ignore", DeprecationWarning)
    import asynchat


def terminator_of(spec):
    if "delimiter" in spec:
        return base64.b64decode(spec["delimiter"])
    if "length" in spec:
        n = spec["length"]
        # 0 means "collect forever" to asynchat, not an empty frame: the generator must never send it
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"length must be an int >= 1, got {n!r}")
        return n
    if spec.get("none") is True:
        return None
    raise ValueError(f"bad terminator {spec!r}")


class Chat(asynchat.async_chat):
    def __init__(self, chunks, schedule):
        # sock=None: no socket, nothing registered in asyncore's map; recv is replaced below
        asynchat.async_chat.__init__(self)
        self.chunks = chunks
        self.next_chunk = 0
        self.schedule = schedule
        self.collected = []
        self.frames = []
        self.set_terminator(schedule[0])

    def recv(self, buffer_size):
        chunk = self.chunks[self.next_chunk]
        self.next_chunk += 1
        return chunk

    def collect_incoming_data(self, data):
        self.collected.append(data)

    def found_terminator(self):
        self.frames.append(b"".join(self.collected))
        self.collected = []
        self.set_terminator(self.schedule[min(len(self.frames), len(self.schedule) - 1)])


def run(case):
    chunks = [base64.b64decode(c) for c in case["chunks"]]
    schedule = [terminator_of(t) for t in case["schedule"]]
    chat = Chat(chunks, schedule)
    for _ in chunks:
        chat.handle_read()
    rest = b"".join(chat.collected) + chat.ac_in_buffer
    return {
        "frames": [base64.b64encode(f).decode("ascii") for f in chat.frames],
        "rest": base64.b64encode(rest).decode("ascii"),
    }


def main():
    if sys.argv[1:] == ["--check"]:
        print(json.dumps({"python": sys.version.split()[0], "asynchat": True}))
        return
    results = []
    for case in json.load(sys.stdin):
        try:
            results.append(run(case))
        except Exception:
            results.append({"error": traceback.format_exc()})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
