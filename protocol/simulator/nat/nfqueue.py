"""Userspace packet delay through NFQUEUE, for kernels built without ``sch_netem``.

Run inside the router namespace (``python -m protocol.simulator.nat.nfqueue --queue 1
--delay-ms 100``): it binds the netfilter queue, and accepts each queued packet ``delay`` after
it arrived. Packets stay in the kernel; only their ids travel, so order is kept (FIFO).
Prints ``ready`` once bound, then nothing. Stdlib only: it speaks nfnetlink directly
(``include/uapi/linux/netfilter/nfnetlink_queue.h``).

The message builders and the parser are pure; :func:`serve` is the I/O loop.
"""

from __future__ import annotations

import argparse
import collections
import os
import select
import socket
import struct
import sys
import time
from collections.abc import Iterator, Sequence

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5

NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4

NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2

NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1

NF_DROP = 0
NF_ACCEPT = 1

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid (host order)
_NLATTR = struct.Struct("=HH")  # len, type (host order)
_NLA_TYPE_MASK = 0x3FFF  # strips NLA_F_NESTED / NLA_F_NET_BYTEORDER


def _attribute(kind: int, payload: bytes) -> bytes:
    length = _NLATTR.size + len(payload)
    return _NLATTR.pack(length, kind) + payload + b"\0" * (-length % 4)


def message(kind: int, queue: int, attributes: bytes, *, seq: int = 0, ack: bool = False) -> bytes:
    """An nfnetlink queue message: nlmsghdr + nfgenmsg (res_id = queue, big-endian) + attrs."""
    body = struct.pack("=BB", socket.AF_UNSPEC, 0) + struct.pack("!H", queue) + attributes
    flags = NLM_F_REQUEST | (NLM_F_ACK if ack else 0)
    msg_type = (NFNL_SUBSYS_QUEUE << 8) | kind
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type, flags, seq, 0) + body


def bind_message(queue: int, *, seq: int) -> bytes:
    command = struct.pack("=BB", NFQNL_CFG_CMD_BIND, 0) + struct.pack("!H", socket.AF_INET)
    return message(NFQNL_MSG_CONFIG, queue, _attribute(NFQA_CFG_CMD, command), seq=seq, ack=True)


def params_message(queue: int, *, max_length: int, seq: int) -> bytes:
    # copy only metadata: the packet id is all we need
    params = _attribute(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))
    maxlen = _attribute(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", max_length))
    return message(NFQNL_MSG_CONFIG, queue, params + maxlen, seq=seq, ack=True)


def verdict_message(queue: int, packet_id: int, verdict: int = NF_ACCEPT) -> bytes:
    header = _attribute(NFQA_VERDICT_HDR, struct.pack("!II", verdict, packet_id))
    return message(NFQNL_MSG_VERDICT, queue, header)


def parse(data: bytes) -> Iterator[tuple[str, int]]:
    """Yield ``("packet", id)`` for queued packets and ``("error", errno)`` for netlink acks
    and errors (errno 0 is an ack) found in one ``recv`` buffer."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, msg_type, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            return
        payload = data[offset + _NLMSGHDR.size : offset + length]
        if msg_type == NLMSG_ERROR:
            (error,) = struct.unpack_from("=i", payload)
            yield "error", -error
        elif msg_type == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            packet_id = _packet_id(payload[4:])  # skip nfgenmsg
            if packet_id is not None:
                yield "packet", packet_id
        offset += (length + 3) & ~3


def _packet_id(attributes: bytes) -> int | None:
    offset = 0
    while offset + _NLATTR.size <= len(attributes):
        length, kind = _NLATTR.unpack_from(attributes, offset)
        if length < _NLATTR.size:
            return None
        if kind & _NLA_TYPE_MASK == NFQA_PACKET_HDR:
            (packet_id,) = struct.unpack_from("!I", attributes, offset + _NLATTR.size)
            return int(packet_id)
        offset += (length + 3) & ~3
    return None


def _configure(sock: socket.socket, request: bytes, what: str) -> None:
    sock.sendto(request, (0, 0))
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        for kind, value in parse(sock.recv(65536)):
            if kind == "error":
                if value:
                    raise OSError(value, f"nfqueue {what}: {os.strerror(value)}")
                return
    raise TimeoutError(f"nfqueue {what}: no answer from the kernel")


def serve(queue: int, delay: float, *, max_length: int = 4096) -> None:
    """Bind ``queue`` and accept every packet ``delay`` seconds after it was queued. Forever."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((0, 0))
    _configure(sock, bind_message(queue, seq=1), f"bind queue {queue}")
    _configure(sock, params_message(queue, max_length=max_length, seq=2), "set copy mode")
    print("ready", flush=True)
    # stdout is the parent's pipe, which it closes once it read "ready"
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())

    pending: collections.deque[tuple[float, int]] = collections.deque()
    while True:
        timeout = max(0.0, pending[0][0] - time.monotonic()) if pending else None
        readable, _, _ = select.select([sock], [], [], timeout)
        if readable:
            arrived = time.monotonic()
            try:
                data = sock.recv(1 << 16)
            except BlockingIOError:
                data = b""
            for kind, value in parse(data):
                if kind == "packet":
                    pending.append((arrived + delay, value))
        now = time.monotonic()
        while pending and pending[0][0] <= now:
            _, packet_id = pending.popleft()
            sock.sendto(verdict_message(queue, packet_id), (0, 0))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--queue", type=int, required=True, help="NFQUEUE number to bind")
    parser.add_argument("--delay-ms", type=float, required=True, help="delay per packet")
    parser.add_argument("--tag", default="", help="free text to find this process by")
    args = parser.parse_args(argv)
    serve(args.queue, args.delay_ms / 1000.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
