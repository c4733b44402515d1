"""An HTTP/3 server on aioquic's API, for synack's client to talk to: GET /bytes/N answers
200 with N bytes of synack's test pattern (byte i is i % 251); anything else 404. Session
tickets are kept, so a client may resume and send 0-RTT (aioquic's server accepts early data).
Prints `listening PORT` once bound to HOST (127.0.0.1 by default), then `request PATH` for
each request.

usage: aioquic_serve.py CERT KEY [HOST]
"""
import asyncio
import sys

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ProtocolNegotiated

PERIOD = 251


class Server(QuicConnectionProtocol):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.h3 = None

    def quic_event_received(self, event):
        if isinstance(event, ProtocolNegotiated) and self.h3 is None:
            self.h3 = H3Connection(self._quic)
        if self.h3 is None:
            return
        for e in self.h3.handle_event(event):
            if isinstance(e, HeadersReceived):
                path = dict(e.headers).get(b":path", b"/").decode()
                print("request", path, flush=True)
                body, status = b"", b"404"
                if path.startswith("/bytes/") and path[7:].isdigit():
                    n = int(path[7:])
                    body = bytes(i % PERIOD for i in range(n))
                    status = b"200"
                self.h3.send_headers(e.stream_id, [(b":status", status),
                                                   (b"content-length", str(len(body)).encode())])
                self.h3.send_data(e.stream_id, body, end_stream=True)
                self.transmit()


async def main():
    cert, key = sys.argv[1], sys.argv[2]
    host = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"
    cfg = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
    cfg.load_cert_chain(cert, key)
    tickets = {}
    server = await serve(host, 0, configuration=cfg, create_protocol=Server,
                         session_ticket_fetcher=tickets.pop,
                         session_ticket_handler=lambda t: tickets.__setitem__(t.ticket, t))
    port = server._transport.get_extra_info("sockname")[1]
    print("listening", port, flush=True)
    await asyncio.Future()


asyncio.run(main())
