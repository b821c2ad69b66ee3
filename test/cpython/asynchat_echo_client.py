"""Seed 003's EchoClient and EchoProducer (asynchat_echo_client.py), ported to Python 3.

The logic is the seed's, line for line; what changed is only what Python 3 needs (bytes instead of str) and
what a test needs: the address comes from the command line and the message from stdin (the seed reads
lorem.txt), `found_terminator` also records whether the copy matched (the seed only logs it), and the exit
status says so: 0 the copy matched, 1 it differed, 2 no complete copy arrived before the server closed. The
seed's debug log goes to stderr.

Usage: python3 asynchat_echo_client.py HOST PORT < message
"""

import logging
import socket
import sys
import warnings

with warnings.catch_warnings():
    # asyncore and asynchat are deprecated (removed in 3.12); the warning is noise on stderr here
    warnings.simplefilter("ignore", DeprecationWarning)
    import asynchat
    import asyncore


class EchoClient(asynchat.async_chat):
    """Sends messages to the server and receives responses."""

    # Artificially reduce buffer sizes to illustrate
    # sending and receiving partial messages.
    ac_in_buffer_size = 64
    ac_out_buffer_size = 64

    def __init__(self, host, port, message):
        self.message = message
        self.received_data = []
        self.copy_matched = None  # added: the verdict, for the exit status
        self.logger = logging.getLogger('EchoClient')
        asynchat.async_chat.__init__(self)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.logger.debug('connecting to %s', (host, port))
        self.connect((host, port))
        return

    def handle_connect(self):
        self.logger.debug('handle_connect()')
        # Send the command
        self.push(b'ECHO %d\n' % len(self.message))
        # Send the data
        self.push_with_producer(EchoProducer(self.message, buffer_size=self.ac_out_buffer_size))
        # We expect the data to come back as-is,
        # so set a length-based terminator
        self.set_terminator(len(self.message))

    def collect_incoming_data(self, data):
        """Read an incoming message from the client and put it into our outgoing queue."""
        self.logger.debug('collect_incoming_data() -> (%d)\n"""%s"""', len(data), data)
        self.received_data.append(data)

    def found_terminator(self):
        self.logger.debug('found_terminator()')
        received_message = b''.join(self.received_data)
        self.copy_matched = received_message == self.message  # added
        if received_message == self.message:
            self.logger.debug('RECEIVED COPY OF MESSAGE')
        else:
            self.logger.debug('ERROR IN TRANSMISSION')
            self.logger.debug('EXPECTED "%s"', self.message)
            self.logger.debug('RECEIVED "%s"', received_message)
        return


class EchoProducer(asynchat.simple_producer):

    logger = logging.getLogger('EchoProducer')

    def more(self):
        response = asynchat.simple_producer.more(self)
        self.logger.debug('more() -> (%s bytes)\n"""%s"""', len(response), response)
        return response


if __name__ == '__main__':
    logging.basicConfig(level=logging.DEBUG, format='%(name)s: %(message)s')
    host, port = sys.argv[1], int(sys.argv[2])
    message_data = sys.stdin.buffer.read()
    client = EchoClient(host, port, message=message_data)
    asyncore.loop()
    sys.exit({True: 0, False: 1, None: 2}[client.copy_matched])
