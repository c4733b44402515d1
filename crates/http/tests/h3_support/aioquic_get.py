"""An HTTP/3 client on aioquic's API: GET each PATH from HOST:PORT on one QUIC connection,
then (with --resume) once more on a second connection that resumes the first's session and
sends its request in 0-RTT. Prints one line per response: `<conn> <status> <bytes> <0rtt>`.

usage: aioquic_get.py HOST PORT [--resume] PATH...
"""
import asyncio
import ssl
import sys

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration


class Client(QuicConnectionProtocol):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.h3 = H3Connection(self._quic)
        self.waiting = {}

    def quic_event_received(self, event):
        for e in self.h3.handle_event(event):
            if isinstance(e, (HeadersReceived, DataReceived)) and e.stream_id in self.waiting:
                fut, got = self.waiting[e.stream_id]
                if isinstance(e, HeadersReceived):
                    got["status"] = dict(e.headers)[b":status"].decode()
                else:
                    got["body"] += e.data
                if e.stream_ended and not fut.done():
                    fut.set_result(got)

    async def get(self, host, port, path):
        sid = self._quic.get_next_available_stream_id()
        self.h3.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"https"),
                                   (b":authority", f"{host}:{port}".encode()),
                                   (b":path", path.encode())], end_stream=True)
        fut = asyncio.get_running_loop().create_future()
        self.waiting[sid] = (fut, {"status": None, "body": b""})
        self.transmit()
        return await asyncio.wait_for(fut, 10)


async def main():
    host, port, rest = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    resume = "--resume" in rest
    paths = [p for p in rest if p != "--resume"]
    tickets = []
    cfg = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, verify_mode=ssl.CERT_NONE)
    async with connect(host, port, configuration=cfg, create_protocol=Client,
                       session_ticket_handler=tickets.append) as c:
        for r in await asyncio.gather(*(c.get(host, port, p) for p in paths)):
            print("1", r["status"], len(r["body"]), "no", flush=True)
        await asyncio.sleep(0.2)
    if resume:
        cfg2 = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN,
                                 verify_mode=ssl.CERT_NONE, session_ticket=tickets[-1])
        async with connect(host, port, configuration=cfg2, create_protocol=Client,
                           wait_connected=False) as c:
            r = await c.get(host, port, paths[0])
            early = "yes" if c._quic.tls.session_resumed and c._quic.tls.early_data_accepted else "no"
            print("2", r["status"], len(r["body"]), early, flush=True)


asyncio.run(main())
