"""``tests.conftest.free_port``: a port below the ephemeral range, and never the same one twice in a row."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.conftest import free_port


def test_free_port_hands_out_distinct_bindable_ports_below_the_ephemeral_range() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(2000)]  # drawn at random from ~12,000: duplicates unless remembered
    assert len(set(ports)) == len(ports)
    assert all(port < low for port in ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))  # nothing took it since
