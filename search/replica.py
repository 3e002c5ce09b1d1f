"""The searches' read-only queries on a streaming replica, when DATABASE_REPLICA_URL names one.

A search reads a lot and writes one row: its k-NN, the scores of its candidates, the likest signature and the
nearest visual words are read-only and tolerate a replica's lag of a moment (an image indexed a second ago may be
missed once). Those queries go through `read(fn)`; everything else (the job's rows, indexing, accounts) stays on the
primary through Django's default connection, so no router is needed.

A replica that does not answer (down, restarting, a connection broken mid-query) never fails a search: the query
runs again on the primary, and the replica is left alone for RETRY_AFTER seconds before it is tried again.
"""

import logging
import time

from django.db import DatabaseError, connections

ALIAS = "replica"
RETRY_AFTER = 30.0  # seconds a replica that failed is left alone

log = logging.getLogger(__name__)
_resting_until = 0.0


def read(fn):
    """fn(db) on the replica's connection if one is configured and answering, else on the primary's; its result.

    fn must only read: it may run twice (on the replica, then on the primary) when the replica fails under it.
    """
    global _resting_until
    if configured() and time.monotonic() >= _resting_until:
        replica = connections[ALIAS]
        try:
            return fn(replica)
        except DatabaseError as exc:
            _resting_until = time.monotonic() + RETRY_AFTER
            log.warning("The replica failed (%s); searches read from the primary for %.0f s.", exc, RETRY_AFTER)
            replica.close()
    return fn(connections["default"])


def configured():
    return ALIAS in connections


def rest_for(seconds):
    """Leave the replica alone for that long (0: try it again at the next read)."""
    global _resting_until
    _resting_until = time.monotonic() + seconds
