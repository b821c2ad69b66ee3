"""Seed 003's EchoServer and EchoHandler (asynchat_echo_server.py, asynchat_echo_handler.py), ported to Python 3.

The logic is the seed's, line for line; what changed is only what Python 3 needs (bytes instead of str) and
what a test needs: bind 127.0.0.1 on a port the kernel picks (the seed's main does the same with port 0) and
print that port on stdout. Like the seed, the server takes one client, then stops listening; the process exits
once that client's handler has closed (the asyncore map is empty). The seed's debug log goes to stderr.

Usage: python3 asynchat_echo_server.py   (prints the port, then serves one client)
"""

import logging
import socket
import warnings

with warnings.catch_warnings():
    # asyncore and asynchat are deprecated (removed in 3.12); the warning is noise on stderr here
    warnings.simplefilter("ignore", DeprecationWarning)
    import asynchat
    import asyncore


class EchoServer(asyncore.dispatcher):
    """Receives connections and establishes handlers for each client."""

    def __init__(self, address):
        asyncore.dispatcher.__init__(self)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.bind(address)
        self.address = self.socket.getsockname()
        self.listen(1)
        return

    def handle_accept(self):
        # Called when a client connects to our socket
        client_info = self.accept()
        EchoHandler(sock=client_info[0])
        # We only want to deal with one client at a time,
        # so close as soon as we set up the handler.
        # Normally you would not do this and the server
        # would run forever or until it received instructions
        # to stop.
        self.handle_close()
        return

    def handle_close(self):
        self.close()


class EchoHandler(asynchat.async_chat):
    """Handles echoing messages from a single client."""

    # Artificially reduce buffer sizes to illustrate
    # sending and receiving partial messages.
    ac_in_buffer_size = 64
    ac_out_buffer_size = 64

    def __init__(self, sock):
        self.received_data = []
        self.logger = logging.getLogger('EchoHandler')
        asynchat.async_chat.__init__(self, sock)
        # Start looking for the ECHO command
        self.process_data = self._process_command
        self.set_terminator(b'\n')
        return

    def collect_incoming_data(self, data):
        """Read an incoming message from the client and put it into our outgoing queue."""
        self.logger.debug('collect_incoming_data() -> (%d bytes)\n"""%s"""', len(data), data)
        self.received_data.append(data)

    def found_terminator(self):
        """The end of a command or message has been seen."""
        self.logger.debug('found_terminator()')
        self.process_data()

    def _process_command(self):
        """We have the full ECHO command"""
        command = b''.join(self.received_data)
        self.logger.debug('_process_command() "%s"', command)
        command_verb, command_arg = command.strip().split(b' ')
        expected_data_len = int(command_arg)
        self.set_terminator(expected_data_len)
        self.process_data = self._process_message
        self.received_data = []

    def _process_message(self):
        """We have read the entire message to be sent back to the client"""
        to_echo = b''.join(self.received_data)
        self.logger.debug('_process_message() echoing\n"""%s"""', to_echo)
        self.push(to_echo)
        # Disconnect after sending the entire response
        # since we only want to do one thing at a time
        self.close_when_done()


if __name__ == '__main__':
    logging.basicConfig(level=logging.DEBUG, format='%(name)s: %(message)s')
    address = ('127.0.0.1', 0)  # let the kernel give us a port
    server = EchoServer(address)
    ip, port = server.address  # find out what port we were given
    print(port, flush=True)
    asyncore.loop()
