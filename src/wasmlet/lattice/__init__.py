"""Past one machine: a lattice of wasmlet hosts on NATS JetStream (``docs/lattice.md``).

- ``Lattice``: one host's membership, from ``serve --lattice``: its connection
  (``_connection``), heartbeats and the live hosts (``_members``), the desired
  state in a JetStream key-value bucket (``_desired``, ``_state``: the
  ``ControlPlane``'s state backend), module bytes in an object store
  (``_modules``), and the agent that places apps and publishes this host's plan
  (``_agent``), with ``place`` from ``wasmlet.plan``;
- ``LatticeClient``: the ``wasmlet lattice`` commands (hosts, apps, drain, apply).

The worker side of a lattice (forwarding requests over NATS) is in
``wasmlet.server``; this package is the control side and nothing below imports it.
"""

from ._agent import RETIRE_AFTER, TICK, Agent, Placed, compute
from ._connection import Connection
from ._desired import DesiredState, InvalidDocument, VersionRecord, decode_desired
from ._lattice import Lattice, host_node
from ._members import (
    FORGET_AFTER,
    HEARTBEAT_EVERY,
    JOIN_WAIT,
    HostRecord,
    Members,
    host_of_token,
    host_token,
    hosts_subject,
    observe,
)
from ._modules import Modules
from ._state import LatticeState
from ._views import LatticeClient

__all__ = [
    "FORGET_AFTER",
    "HEARTBEAT_EVERY",
    "JOIN_WAIT",
    "RETIRE_AFTER",
    "TICK",
    "Agent",
    "Connection",
    "DesiredState",
    "HostRecord",
    "InvalidDocument",
    "Lattice",
    "LatticeClient",
    "LatticeState",
    "Members",
    "Modules",
    "Placed",
    "VersionRecord",
    "compute",
    "decode_desired",
    "host_node",
    "host_of_token",
    "host_token",
    "hosts_subject",
    "observe",
]
