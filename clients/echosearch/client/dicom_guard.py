"""Who may hold an association with the DICOM receiver, and for how long: held-open associations cannot starve it.

- One peer address holds at most `max_per_peer` associations; more are closed at accept.
- The receiver holds at most `max_total`. When they are all taken, the association that has gone longest
  without storing (and at least EVICTABLE_AFTER_S) is closed to make room, so idle ones never lock a sender
  out; a new association is refused only while every slot is storing.
- An association that stores nothing for `idle_timeout_s` is closed. Only storage traffic counts: P-DATA on
  a storage presentation context, and the time a C-STORE is being ingested. C-ECHO does not count, so echoing
  never keeps an association open.

Connections are counted from accept, before any DICOM is spoken (a TCP connection that never sends an
A-ASSOCIATE-RQ holds a slot too). Closing one shuts its socket down; pynetdicom then ends the association.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pynetdicom import evt
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.sop_class import Verification
from pynetdicom.transport import ThreadedAssociationServer

log = logging.getLogger(__name__)

EVICTABLE_AFTER_S = 1.0  # an association between two C-STOREs of a study is not idle
SWEEP_EVERY_S = 0.5

Address = tuple[str, int]


@dataclass
class _Connection:
    sock: socket.socket
    last_activity: float  # clock() of the last storage traffic, or of the accept
    storing: int = 0  # C-STOREs being ingested


class AssociationGuard:
    """The per-peer cap, the total cap with room made from idle associations, and the idle timeout."""

    def __init__(
        self,
        *,
        max_total: int,
        max_per_peer: int,
        idle_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_total, self.max_per_peer, self.idle_timeout_s = max_total, max_per_peer, idle_timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._connections: dict[Address, _Connection] = {}
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        self.refused = self.evicted = self.timed_out = 0

    def admit(self, sock: socket.socket, address: Address) -> bool:
        """Whether a new connection from `address` may be served (making room if needed); refused ones are closed."""
        now = self._clock()
        with self._lock:
            self._forget_closed()
            peer = address[0]
            if sum(1 for a in self._connections if a[0] == peer) >= self.max_per_peer:
                self.refused += 1
                log.warning("refused a connection from %s: it holds %d associations already", peer, self.max_per_peer)
                return False
            if len(self._connections) >= self.max_total and not self._make_room(now):
                self.refused += 1
                log.warning("refused a connection from %s: all %d associations are storing", peer, self.max_total)
                return False
            self._connections[address] = _Connection(sock, now)
            return True

    def activity(self, address: Address) -> None:
        """Storage traffic on the association from `address`: it is not idle."""
        with self._lock:
            connection = self._connections.get(address)
            if connection is not None:
                connection.last_activity = self._clock()

    def storing(self, address: Address, started: bool) -> None:
        """A C-STORE from `address` started (True) or was answered (False); never idle in between."""
        with self._lock:
            connection = self._connections.get(address)
            if connection is not None:
                connection.storing += 1 if started else -1
                connection.last_activity = self._clock()

    def sweep(self) -> None:
        """Close the associations idle for longer than the idle timeout."""
        now = self._clock()
        with self._lock:
            self._forget_closed()
            for address, connection in list(self._connections.items()):
                if not connection.storing and now - connection.last_activity > self.idle_timeout_s:
                    self.timed_out += 1
                    log.info("closing the association from %s:%d: idle for %.0f s", *address, self.idle_timeout_s)
                    self._close(address, connection)

    def start(self) -> None:
        """Sweep in a background thread until stop()."""
        self._sweeper = threading.Thread(target=self._sweep_forever, name="dicom-listen-idle", daemon=True)
        self._sweeper.start()

    def stop(self) -> None:
        self._stop.set()
        if self._sweeper is not None:
            self._sweeper.join(5)

    def handlers(self) -> list[tuple[Any, Callable[[evt.Event], None]]]:
        """pynetdicom event handlers that report storage traffic (P-DATA on a storage context) to the guard."""
        return [(evt.EVT_PDU_RECV, self._on_pdu)]

    def _on_pdu(self, event: evt.Event) -> None:
        if not isinstance(event.pdu, P_DATA_TF):
            return
        contexts = {cx.context_id: cx.abstract_syntax for cx in event.assoc.accepted_contexts}
        if any(contexts.get(item.context_id) != Verification for item in event.pdu.presentation_data_value_items):
            self.activity(address_of(event))

    def _sweep_forever(self) -> None:
        while not self._stop.wait(SWEEP_EVERY_S):
            self.sweep()

    def _make_room(self, now: float) -> bool:
        idle = [
            (c.last_activity, a, c)
            for a, c in self._connections.items()
            if not c.storing and now - c.last_activity >= EVICTABLE_AFTER_S
        ]
        if not idle:
            return False
        _, address, connection = min(idle)
        self.evicted += 1
        log.info("closing the association from %s:%d to make room: the longest without a C-STORE", *address)
        self._close(address, connection)
        return True

    def _close(self, address: Address, connection: _Connection) -> None:
        self._connections.pop(address, None)
        try:
            connection.sock.shutdown(socket.SHUT_RDWR)  # the association's reader sees the end and aborts
        except OSError:
            pass  # already closed by its side

    def _forget_closed(self) -> None:
        for address, connection in list(self._connections.items()):
            if connection.sock.fileno() < 0:  # pynetdicom closed it: the association ended
                del self._connections[address]


def address_of(event: evt.Event) -> Address:
    """The (host, port) of the peer of an acceptor association."""
    return (event.assoc.requestor.address, event.assoc.requestor.port)


class GuardedAssociationServer(ThreadedAssociationServer):
    """pynetdicom's threaded server, with admission by an AssociationGuard and the TLS handshake off the accept loop."""

    guard: AssociationGuard

    def get_request(self) -> tuple[socket.socket, Address]:
        client_socket, address = self.socket.accept()
        if self.ssl_context:
            # Wrapping with the handshake deferred: a peer that stalls mid-handshake holds its own thread (and a
            # guarded slot, swept when idle), never the accept loop.
            client_socket = self.ssl_context.wrap_socket(client_socket, server_side=True, do_handshake_on_connect=False)
        return client_socket, address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return self.guard.admit(request, (client_address[0], client_address[1]))

    def shutdown(self) -> None:
        """Stop serving and close the listening socket (started by the receiver, not by AE.start_server)."""
        socketserver.BaseServer.shutdown(self)
        self.server_close()
