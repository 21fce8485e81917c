"""Master-key rotation: re-wrap every live data key of one log under a new master key.

Events, snapshots and the chain are untouched (they are under the data keys and the
chain key); only the wrapped keys, the wrapped chain key and the master-key check token
change, in one transaction written against
the recorder protocol, so a crash leaves either the old or the new wrapping.
"""

from __future__ import annotations

from nocturnus.store.crypto import MasterKey
from nocturnus.store.sealer import Sealer


def rotate_master_key(sealer: Sealer, new_master_key: MasterKey) -> int:
    """Re-wrap every live data key of ``sealer``'s log under ``new_master_key``; return
    how many. The sealer keeps working with the new key afterwards."""
    with sealer.maintenance() as tx:
        count = sealer.keys.rewrap(tx, new_master_key)
        sealer.rewrap_chain_key(tx, new_master_key)
        version = 2 if sealer.chain.keyed else 1
        tx.set_meta(
            "master_key_check", new_master_key.check_value(sealer.database, version)
        )
    sealer.keys.use_master(new_master_key)
    return count
