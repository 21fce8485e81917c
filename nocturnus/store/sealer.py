"""The sealer: one database's event log as the service sees it, over any recorder.

Everything that needs a key happens here, once for every backend: each event is
encrypted with AES-256-GCM under its tenant's data key with AAD = (database, seq, tenant,
kind) and hash-chained to the one before it (STYLE rule 8); reading reverses it, and a
record whose key was destroyed reads back with ``body=None``. The recorder below
(:mod:`nocturnus.store.recorder`) only ever sees ciphertext, ids, kinds and times.

**Appends and the optimistic check.** An :class:`Append` carries the events one
decision produced for one stream (a tenant, ``""`` for the database level) and the
stream position that decision was made on. :meth:`Sealer.append` seals a batch of them
in one recorder transaction: under the write lock it compares each append's expected
position with the stream's position in the store and refuses the append with
:class:`~nocturnus.store.errors.AppendConflict` when another writer appended to that
stream since; the others are stored. Seqs are given out here, under the lock, as head +
1, head + 2, ... so two processes never give out the same one. An append may instead
expect to follow another :class:`Append` of this process that was queued before it (it
was decided on that one's events before they were stored): it is refused when that one
was.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable, Collection, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import starmap
from typing import Any

from cryptography.exceptions import InvalidTag

from nocturnus.errors import NocturnusError, StartupError
from nocturnus.store.anchor import Anchor
from nocturnus.store.chain import (
    GENESIS,
    PLAIN,
    Break,
    Chain,
    head_break,
    unpack_head,
    walk,
)
from nocturnus.store.crypto import KEY_BYTES, AesGcmCipher, MasterKey
from nocturnus.store.errors import (
    AppendConflict,
    ChainBroken,
    CorruptRecord,
    CryptoError,
    InvalidRecord,
    StorageError,
    WrongMasterKey,
)
from nocturnus.store.keys import KeyRing
from nocturnus.store.record import LogRecord, RecordTuple, build_record, frame
from nocturnus.store.recorder import ChainRow, Recorder, Tip, WriteTransaction
from nocturnus.store.snapshots import KEEP, SealedSnapshot, open_snapshot, seal

log = logging.getLogger("nocturnus.store")

_STALE = Tip(-1, b"")
CHAIN_KEY = "chain_key"
UPGRADE_CHUNK = 10_000


@dataclass(slots=True, eq=False)
class Append:
    """One decision's events for one stream, and the position it was decided on.

    ``expected`` is the stream's position (the seq of its last event, 0 for none) the
    decision saw; another :class:`Append` of this process when the decision saw that
    one's events before they were stored; or None for an append that does not depend
    on the stream's state (an audit entry). ``ends_stream`` marks a tenant's deletion:
    the events are sealed under the database-level key (they outlive the tenant) and
    then the tenant's key is destroyed with its snapshots, shredding everything
    written under it.

    The sealer fills in the outcome: ``seqs`` once stored, or ``error``.
    """

    stream: str
    expected: int | Append | None
    ts_ms: int
    events: Sequence[tuple[str, bytes]]
    ends_stream: bool = False
    seqs: range | None = None
    error: NocturnusError | None = None


class Sealer:
    """The event log of one database over one recorder. Not thread-safe: one instance
    per thread (the recorder's connection never crosses threads)."""

    def __init__(self, recorder: Recorder, master_key: MasterKey) -> None:
        self.recorder = recorder
        self.database = recorder.database
        self.keys = KeyRing(recorder, master_key)
        self.chain: Chain = PLAIN
        self._chain_key: bytes | None = None
        self._aad_head = frame("event", recorder.database) + b"i"
        self._tip = _STALE
        # stream -> position, valid while the head is ``_tip`` (our own appends keep
        # it up to date; another writer's append moves the head and clears it).
        self._positions: dict[str, int] = {}
        self._closed = False
        # the head kept outside the log (issue 14, item 6); None: no anchor here
        self.anchor: Anchor | None = None

    # -- opening -------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        recorder: Recorder,
        master_key: MasterKey,
        *,
        check_tail: int | None = 1000,
    ) -> Sealer:
        """Check the recorder's identity, load its keys, check its newest events.

        Takes ownership of ``recorder`` (closed on failure). ``check_tail=None`` skips
        the chain check (``verify`` reports on the whole chain instead of refusing).

        A read-write open also checks the log's head against its anchor (whatever
        ``check_tail``) and anchors it; a read-only one only loads the anchor for
        :func:`~nocturnus.store.verify.verify_log`.

        :raises WrongMasterKey: the master key is not the one this log was written with.
        :raises ChainBroken: a changed, removed or reordered event, naming its seq, or
            a head behind the anchor (acknowledged events lost: a truncated -wal file).
        :raises AnchorDamaged: the anchor file does not verify.
        :raises StartupError: the rows belong to another database.
        :raises StorageError: the recorder failed.
        """
        self = cls(recorder, master_key)
        try:
            version = self._check_identity(master_key)
            self._tip = recorder.head()
            self.keys.load(master_checked=version is not None)
            self._load_chain(master_key, version)
            if check_tail is not None:
                self._check_tail(check_tail)
            if not self.chain.keyed and not self.readonly:
                self._upgrade_chain(master_key)
            self._open_anchor()
        except BaseException:
            self.close()
            raise
        return self

    @property
    def readonly(self) -> bool:
        return self.recorder.readonly

    @property
    def where(self) -> str:
        return self.recorder.where

    def _check_identity(self, master_key: MasterKey) -> int | None:
        """Check the stored database name and master-key token; write them on first
        open (with a new log's chain key). Returns the token's version (2: the chain
        is keyed), None when a read-only log has no token to confirm the key."""
        meta = self.recorder.meta()
        stored_name = meta.get("database")
        if stored_name is not None and stored_name.decode() != self.database:
            raise StartupError(
                f"event log {self.where} belongs to database {stored_name.decode()!r}, "
                f"not {self.database!r}"
            )
        token = meta.get("master_key_check")
        if token is not None:
            version = master_key.check_version(token, self.database)
            if version is None:
                raise WrongMasterKey(
                    f"wrong master key for database {self.database!r} ({self.where}): "
                    "set the NOCTURNUS_MASTER_KEY (or master.key) it was created with"
                )
            return version
        if self.readonly:
            return None
        initial = {"database": self.database.encode()}
        if self.recorder.key_rows():
            # Keys without a token (a log from before tokens): check them first, then
            # record the token; its plain chain is upgraded below.
            self.keys.load(master_checked=False)
            initial["master_key_check"] = master_key.check_value(self.database, 1)
        else:
            initial["master_key_check"] = master_key.check_value(self.database)
            initial[CHAIN_KEY] = master_key.wrap_secret(
                os.urandom(KEY_BYTES), CHAIN_KEY, self.database
            )
        meta = self.recorder.init_meta(initial)
        # Another process may have created the log first: its token won.
        version = master_key.check_version(meta["master_key_check"], self.database)
        if version is None:
            raise WrongMasterKey(
                f"wrong master key for database {self.database!r} ({self.where}): "
                "another process created it with a different master key"
            )
        return version

    def _load_chain(self, master_key: MasterKey, version: int | None) -> None:
        """Unwrap the log's chain key; a log without one keeps the plain chain, unless
        its token says it was keyed (then someone removed the key: a downgrade)."""
        wrapped = self.recorder.meta().get(CHAIN_KEY)
        if wrapped is None:
            if version == 2:
                raise ChainBroken(
                    max(self._tip.seq, 1),
                    "the log's chain key is gone although the log was keyed: it was "
                    "changed by someone without the master key",
                )
            return
        try:
            key = master_key.unwrap_secret(wrapped, CHAIN_KEY, self.database)
        except CryptoError as e:
            raise ChainBroken(
                max(self._tip.seq, 1), "the log's chain key does not unwrap: it was changed"
            ) from e
        self._chain_key = key
        self.chain = Chain(key)

    def _upgrade_chain(self, master_key: MasterKey) -> None:
        """Re-link a log written before issue 14 under a new chain key, once.

        The whole plain chain must hold first: a re-chain must never launder damage
        into a chain that verifies. One transaction with the new key, the MACs of the
        compacted ranges and the version-2 token: a crash leaves the plain chain.

        :raises ChainBroken: the plain chain is damaged; nothing is changed.
        """
        key = os.urandom(KEY_BYTES)
        chain = Chain(key)
        database = self.database
        with self.maintenance() as tx:
            meta = self.recorder.meta()
            start = self._chain_start(meta)
            ranges = self.recorder.compacted()
            gaps = {first: last for first, last, _, _ in ranges}
            last_seq, last_hash = start
            prev = start[1]
            links: list[tuple[bytes, bytes, int]] = []
            for item in walk(_chunked(tx), *start, gaps, PLAIN):
                if isinstance(item, Break):
                    raise ChainBroken(
                        item.seq,
                        f"{item.reason}; the upgrade to a keyed chain was refused (it "
                        "would re-chain over the damage)",
                    )
                seq, ts_ms, tenant, kind, key_id, nonce, payload, _, old = item
                last_seq, last_hash = seq, old
                new = chain.hash(prev, seq, ts_ms, tenant, kind, key_id, nonce, payload)
                links.append((prev, new, seq))
                prev = new
                if len(links) >= UPGRADE_CHUNK:
                    tx.rechain(links)
                    links = []
            recorded = meta.get("head")
            broken = head_break(
                unpack_head(recorded) if recorded is not None else None,
                last_seq,
                last_hash if last_seq else None,
            )
            if broken is not None:
                raise ChainBroken(broken.seq, f"{broken.reason}; the upgrade was refused")
            tx.rechain(links)
            tx.set_range_macs(
                [(chain.range_mac(database, f, l, c), f) for f, l, c, _ in ranges]
            )
            tx.set_head(Tip(last_seq, prev if last_seq else GENESIS))
            tx.set_meta(CHAIN_KEY, master_key.wrap_secret(key, CHAIN_KEY, database))
            tx.set_meta("master_key_check", master_key.check_value(database))
        self._chain_key = key
        self.chain = chain
        log.warning(
            "database %r: its plain hash chain of %d events was verified and re-linked "
            "under a keyed chain (issue 14)",
            database,
            last_seq,
        )

    def _open_anchor(self) -> None:
        """Load the head anchor; read-write: refuse a head behind it, then anchor it."""
        path = self.recorder.anchor_path
        key = self.chain.subkey("anchor", self.database)
        if path is None or key is None:  # no anchor here, or a plain chain (read-only)
            return
        self.anchor = Anchor(path, key, self.database, writable=not self.readonly)
        if self.readonly:
            return
        anchored = self.anchor.read()  # before the head: see Anchor.behind
        head = self._follow()
        broken = self.anchor.behind(anchored, head)
        if broken is not None:
            raise ChainBroken(broken.seq, broken.reason)
        if anchored is None and head.seq:
            log.warning(
                "database %r (%s): no head anchor yet; anchoring the log at seq %d",
                self.database, self.where, head.seq,
            )
        self._advance_anchor(head)

    def _advance_anchor(self, tip: Tip) -> None:
        """Anchor ``tip`` after its commit. A failure is logged, never raised: the
        commit is durable and its writers are owed their answer."""
        if self.anchor is None:
            return
        try:
            self.anchor.advance(tip)
        except OSError as e:
            log.error(
                "database %r: the head anchor %s could not be written (%s): a lost "
                "-wal file would go unnoticed until it is",
                self.database, self.anchor.path, e.strerror,
            )

    def rewrap_chain_key(self, tx: WriteTransaction, new_master: MasterKey) -> None:
        """Store the chain key wrapped by ``new_master`` (rotation), inside ``tx``."""
        if self._chain_key is not None:
            tx.set_meta(
                CHAIN_KEY, new_master.wrap_secret(self._chain_key, CHAIN_KEY, self.database)
            )

    def _chain_start(self, meta: dict[str, bytes]) -> tuple[int, bytes]:
        """Return (seq before the first event, its hash): (0, GENESIS) until compaction."""
        value = meta.get("chain_start")
        return unpack_head(value) if value is not None else (0, GENESIS)

    def _check_tail(self, count: int) -> None:
        """Check links and hashes of the newest ``count`` events and the recorded head.

        :raises ChainBroken: naming the first bad seq.
        """
        recorder = self.recorder
        meta, rows = recorder.chain_tail(max(count, 0) + 1)
        start_seq, start_hash = self._chain_start(meta)
        gaps, _ = self.chain.gaps(self.database, recorder.compacted())
        anchor_seq: int
        anchor_hash: bytes | None
        if rows and (rows[0][0] <= start_seq + 1 or len(rows) <= count):
            anchor_seq, anchor_hash = start_seq, start_hash
        elif rows:
            # The oldest row fetched anchors the window: check its own hash, trust its link.
            first = rows.pop(0)
            anchor_seq, anchor_hash = first[0], first[8]
            if self._row_hash(first) != first[8]:
                raise ChainBroken(
                    first[0], "the row does not match its hash: it was changed or moved"
                )
        else:
            anchor_seq, anchor_hash = start_seq, start_hash
        last_seq, last_hash = anchor_seq, anchor_hash
        for item in walk(rows, anchor_seq, anchor_hash, gaps, self.chain):
            if isinstance(item, Break):
                raise ChainBroken(item.seq, item.reason)
            last_seq, last_hash = item[0], item[8]
        recorded = meta.get("head")
        broken = head_break(
            unpack_head(recorded) if recorded is not None else None, last_seq, last_hash
        )
        if broken is not None:
            raise ChainBroken(broken.seq, broken.reason)

    def _row_hash(self, row: ChainRow) -> bytes:
        seq, ts_ms, tenant, kind, key_id, nonce, payload, prev_hash, _ = row
        return self.chain.hash(prev_hash, seq, ts_ms, tenant, kind, key_id, nonce, payload)

    def _follow(self) -> Tip:
        """Pick up what other writers committed: destroyed and new keys, positions."""
        tip = self.recorder.head()
        if tip != self._tip:
            self.keys.refresh()
            self._positions.clear()
            self._tip = tip
        return tip

    # -- writing -------------------------------------------------------------------

    def append(self, appends: Sequence[Append]) -> None:
        """Seal and store ``appends`` in one transaction; set each one's outcome.

        An append is refused alone (its ``error`` set, nothing of it written) when it
        is malformed (:class:`InvalidRecord`) or its expected position no longer holds
        (:class:`AppendConflict`); the rest of the batch is stored, durable when this
        returns. Each stream's first event creates its data key in the same
        transaction.

        :raises StorageError: the transaction failed; no append of the batch is stored.
        """
        self._require_writable()
        valid: list[Append] = []
        for append in appends:
            problem = _problem(append)
            if problem is None:
                valid.append(append)
            else:
                append.error = InvalidRecord(None, problem)
        if not valid:
            return
        keys = self.keys
        positions = self._positions
        stored: list[Append] = []
        try:
            with self.recorder.transaction() as tx:
                tip = tx.head
                if tip != self._tip:  # another writer appended since we last looked
                    positions.clear()
                    keys.refresh(tx.key_rows())
                wanted = {
                    a.stream
                    for a in valid
                    if a.expected is not None and a.stream not in positions
                }
                if wanted:
                    positions.update(tx.positions(wanted))
                seq, prev = tip
                rows: list[ChainRow] = []
                for append in valid:
                    refusal = _refusal(append, positions)
                    if refusal is not None:
                        append.error = refusal
                        continue
                    first = seq + 1
                    seq, prev = self._seal(tx, append, seq, prev, rows)
                    append.seqs = range(first, seq + 1)
                    positions[append.stream] = seq
                    stored.append(append)
                if rows:
                    tx.insert(rows)
                    tx.set_head(Tip(seq, prev))
        except BaseException:
            keys.rollback()
            for append in stored:
                append.seqs = None
            positions.clear()
            self._tip = _STALE
            raise
        keys.commit()
        self._tip = Tip(seq, prev)
        if stored:
            self._advance_anchor(self._tip)

    @contextmanager
    def maintenance(self) -> Iterator[WriteTransaction]:
        """A write transaction for jobs that change more than appends do (compaction,
        key rotation): keys staged inside it become visible only if it commits, and
        everything cached is re-read afterwards."""
        self._require_writable()
        try:
            with self.recorder.transaction() as tx:
                yield tx
        except BaseException:
            self.keys.rollback()
            raise
        finally:
            self._positions.clear()
            self._tip = _STALE
        self.keys.commit()
        if self.anchor is not None:
            self._advance_anchor(self._follow())

    def seal_after(
        self, tx: WriteTransaction, tip: Tip, appends: Sequence[Append]
    ) -> Tip:
        """Seal ``appends`` after ``tip`` inside a :meth:`maintenance` transaction,
        without the optimistic check (the caller holds the lock and chose ``tip``);
        store them and record the new head."""
        seq, prev = tip
        rows: list[ChainRow] = []
        for append in appends:
            problem = _problem(append)
            if problem is not None:
                raise InvalidRecord(None, problem)
            first = seq + 1
            seq, prev = self._seal(tx, append, seq, prev, rows)
            append.seqs = range(first, seq + 1)
        tx.insert(rows)
        head = Tip(seq, prev)
        tx.set_head(head)
        return head

    def _seal(
        self,
        tx: WriteTransaction,
        append: Append,
        seq: int,
        prev: bytes,
        rows: list[ChainRow],
    ) -> tuple[int, bytes]:
        """Encrypt and chain one append's events after (seq, prev) into ``rows``."""
        keys = self.keys
        stream, ts_ms = append.stream, append.ts_ms
        key_stream = "" if append.ends_stream else stream
        key_id, cipher = keys.current(key_stream) or keys.create(
            tx, key_stream, seq + 1, ts_ms
        )
        aad_head = self._aad_head
        encrypt = cipher.encrypt
        chain_hash = self.chain.hash
        packers: dict[str, tuple[Callable[..., bytes], bytes]] = {}
        for kind, body in append.events:
            seq += 1
            packer = packers.get(kind)
            if packer is None:  # record_aad(database, seq, tenant, kind), packed
                packer = packers[kind] = _aad_packer(aad_head, stream, kind)
            nonce, payload = encrypt(body, packer[0](aad_head, seq, packer[1]))
            h = chain_hash(prev, seq, ts_ms, stream, kind, key_id, nonce, payload)
            rows.append((seq, ts_ms, stream, kind, key_id, nonce, payload, prev, h))
            prev = h
        if append.ends_stream:
            keys.destroy(tx, stream, seq, ts_ms)
            tx.drop_snapshots(stream)
        return seq, prev

    # -- reading -------------------------------------------------------------------

    def head(self) -> int:
        """Return the last seq, 0 when the log is empty."""
        self._require_open()
        return self._follow().seq

    def tip(self) -> Tip:
        """The head's seq and chain hash."""
        self._require_open()
        return self._follow()

    def read(
        self,
        after_seq: int = 0,
        *,
        tenant: str | None = None,
        until_seq: int | None = None,
        limit: int | None = None,
    ) -> Iterator[LogRecord]:
        """Yield decrypted records with ``after_seq < seq <= until_seq`` in seq order.

        Consume the iterator in the thread that opened the log. Shredded records come
        back with ``body=None``.

        :raises CorruptRecord: a record whose key exists fails to decrypt (never skipped).
        """
        entries = self.entries(
            after_seq, tenant=tenant, until_seq=until_seq, limit=limit
        )
        return _records(entries)

    def entries(
        self,
        after_seq: int = 0,
        *,
        tenant: str | None = None,
        tenants: Collection[str] | None = None,
        until_seq: int | None = None,
        limit: int | None = None,
    ) -> Generator[RecordTuple, None, None]:
        """:meth:`read`'s records as plain ``(seq, ts_ms, tenant, kind, body)`` tuples.

        Replay's path (issue 3): a tuple is built and unpacked for a fraction of what
        a record costs. The same rows, order, errors and shredded ``body=None``.
        ``tenants`` keeps the rows of those tenants only (a parallel replay's share).
        """
        self._require_open()
        self._follow()
        rows = self.recorder.rows(
            after_seq, tenant=tenant, tenants=tenants, until_seq=until_seq, limit=limit
        )
        return self._decrypt(rows)

    def tail(
        self, after_seq: int, timeout_s: float, *, tenant: str | None = None
    ) -> Generator[RecordTuple, None, None]:
        """The entries after ``after_seq``, once there are any or ``timeout_s`` ended.

        How a reader follows other processes' appends: it waits on the recorder
        (woken early where the backend can notify, polling otherwise), then reads.
        """
        self._require_open()
        self.recorder.wait_for(after_seq, timeout_s)
        return self.entries(after_seq, tenant=tenant)

    def _decrypt(self, rows: Iterator[Any]) -> Generator[RecordTuple, None, None]:
        head = self._aad_head  # frame(seq) starts with its tag
        # (key_id, tenant, kind) -> (decrypt, pack, tail) of its rows; None: shredded
        plans: dict[tuple[int, str, str], _Plan | None] = {}
        plan: Any
        try:
            for seq, ts_ms, tenant, kind, key_id, nonce, payload in rows:
                plan = plans.get((key_id, tenant, kind), _MISSING)
                if plan is _MISSING:
                    plan = plans[(key_id, tenant, kind)] = self._plan(
                        seq, head, key_id, tenant, kind
                    )
                if plan is None:
                    yield seq, ts_ms, tenant, kind, None
                    continue
                decrypt, pack, tail = plan
                try:
                    body = decrypt(nonce, payload, pack(head, seq, tail))
                except (InvalidTag, ValueError, TypeError) as e:
                    raise CorruptRecord(seq, tenant=tenant) from e
                yield seq, ts_ms, tenant, kind, body
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                close()

    def _plan(
        self, seq: int, head: bytes, key_id: int, tenant: str, kind: str
    ) -> _Plan | None:
        """How rows of (key_id, tenant, kind) decrypt: None when the key was destroyed.

        :raises CorruptRecord: naming ``seq``, when the key does not exist at all.
        """
        try:
            cipher = self.keys.cipher(key_id)
        except KeyError:
            raise CorruptRecord(
                seq, f"its data key {key_id} does not exist", tenant
            ) from None
        if cipher is None:
            return None
        pack, tail = _aad_packer(head, tenant, kind)  # record_aad(...), packed
        return cipher.aead.decrypt, pack, tail

    def tenant_events(self, until_seq: int | None = None) -> dict[str, int]:
        """Return tenant -> how many events it has up to ``until_seq`` (every name in
        the log, ``""`` for database-level events, shredded tenants included)."""
        self._require_open()
        return self.recorder.tenant_event_counts(until_seq)

    def tenants(self) -> dict[str, int]:
        """Return live tenants (those with a non-destroyed key), excluding '', -> created
        ts_ms."""
        self._require_open()
        self._follow()
        return self.keys.live_tenants()

    def meta_value(self, name: str) -> bytes | None:
        """Return one metadata value (e.g. a backup's ``backup_info``)."""
        self._require_open()
        return self.recorder.meta().get(name)

    def tenant_key(self, tenant: str) -> tuple[int, AesGcmCipher] | None:
        """The live data key of ``tenant`` as the store has it now (keys other writers
        created or destroyed included), for sealing what is kept beside the log."""
        self._require_open()
        self._follow()
        return self.keys.current(tenant)

    # -- snapshots -----------------------------------------------------------------

    def save_snapshot(self, tenant: str, seq: int, body: bytes) -> bool:
        """Store ``body`` as ``tenant``'s state as of ``seq``, keeping the newest few.

        All steps at once, in this thread (offline tools, tests); a running server
        takes them one writer job at a time (:meth:`snapshot_key`, ``snapshots.seal``,
        :meth:`write_snapshot_part`, :meth:`finish_snapshot`). Returns False without
        storing when the tenant has no live key or ``seq`` predates its current key
        (the state belongs to a deleted incarnation: storing it under the new key
        would resurrect shredded data).

        :raises InvalidRecord: ``seq`` is beyond the head.
        """
        key = self.snapshot_key(tenant, seq)
        if key is None:
            return False
        sealed = seal(self.database, tenant, seq, key, body)
        for part in range(sealed.parts):
            self.write_snapshot_part(sealed, part)
        return self.finish_snapshot(sealed)

    def snapshot_key(self, tenant: str, seq: int) -> tuple[int, AesGcmCipher] | None:
        """The key to seal a snapshot of ``tenant`` as of ``seq`` with; None: not
        storable (the tenant has no live key).

        :raises InvalidRecord: ``seq`` is beyond the head.
        """
        self._require_writable()
        head = self._follow().seq
        if seq > head or seq < 0:
            raise InvalidRecord(
                seq, f"a snapshot cannot cover a seq beyond the head {head}"
            )
        return self.keys.current(tenant)

    def write_snapshot_part(self, sealed: SealedSnapshot, part: int) -> None:
        """Store one piece of a sealed snapshot, in a transaction of its own."""
        self._require_writable()
        if not 0 <= part < sealed.parts:
            raise ValueError(f"part {part} of a snapshot with {sealed.parts} parts")
        self.recorder.write_snapshot_part(
            sealed.tenant, sealed.seq, part, sealed.pieces[part]
        )

    def finish_snapshot(self, sealed: SealedSnapshot) -> bool:
        """Make a sealed snapshot visible once all its parts are stored; False when it
        was not stored (the tenant was shredded meanwhile, or a part went missing)."""
        self._require_writable()
        return self.recorder.finish_snapshot(
            sealed.tenant,
            sealed.seq,
            sealed.key_id,
            sealed.nonce,
            sealed.pieces[-1],
            sealed.parts,
            KEEP,
        )

    def latest_snapshot(self, tenant: str) -> tuple[int, bytes] | None:
        """Return (seq, body) of the newest readable snapshot of ``tenant``, if any."""
        self._require_open()
        self._follow()
        for row in self.recorder.snapshots(tenant):
            body = open_snapshot(self.keys, self.database, row)
            if body is not None:
                return row.seq, body
        return None

    # -- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        """Close the recorder; further calls raise StorageError."""
        if not self._closed:
            self._closed = True
            if self.anchor is not None:
                self.anchor.close()
            self.recorder.close()

    def _require_open(self) -> None:
        if self._closed:
            raise StorageError(f"event log {self.where} is closed")

    def _require_writable(self) -> None:
        self._require_open()
        if self.readonly:
            raise StorageError(f"event log {self.where} was opened read-only")

    def __repr__(self) -> str:
        mode = "ro" if self.readonly else "rw"
        return f"Sealer({self.database!r}, {self.where!r}, {mode})"


_MISSING = object()
_Plan = tuple[Callable[[bytes, bytes, bytes], bytes], Callable[..., bytes], bytes]


def _problem(append: Append) -> str | None:
    """Why ``append`` is malformed (a caller bug), or None."""
    if not isinstance(append.stream, str):
        return "the tenant must be a string"
    if not isinstance(append.ts_ms, int) or isinstance(append.ts_ms, bool):
        return "ts_ms must be an int"
    if not append.events:
        return "an append needs at least one event"
    for kind, body in append.events:
        if not isinstance(kind, str) or not kind:
            return "each kind must be a non-empty string"
        if not isinstance(body, bytes):
            return "each body must be bytes"
    if append.ends_stream and not append.stream:
        return "only a tenant's stream can end (a tenant deletion needs a tenant name)"
    return None


def _refusal(append: Append, positions: dict[str, int]) -> NocturnusError | None:
    """The conflict refusing ``append`` under the lock, or None when it may be stored."""
    expected = append.expected
    if expected is None:
        return None
    if isinstance(expected, Append):
        if expected.seqs is None:
            return AppendConflict(append.stream, None, None)
        expected = expected.seqs[-1]
    actual = positions[append.stream]
    if actual != expected:
        return AppendConflict(append.stream, expected, actual)
    return None


def _records(entries: Generator[RecordTuple, None, None]) -> Iterator[LogRecord]:
    """The entries as records; closing this closes them (and their cursor)."""
    try:
        yield from starmap(build_record, entries)
    finally:
        entries.close()


def _aad_packer(head: bytes, tenant: str, kind: str) -> tuple[Callable[..., bytes], bytes]:
    """``record_aad`` for one (tenant, kind) as one struct pack: (pack, tail).

    ``pack(head, seq, tail)`` equals ``record_aad(database, seq, tenant, kind)`` when
    ``head`` is ``frame("event", database) + b"i"``: one C call per record instead of
    framing four parts in Python.
    """
    tail = frame(tenant, kind)
    return struct.Struct(f">{len(head)}sq{len(tail)}s").pack, tail


def _chunked(tx: WriteTransaction) -> Iterator[ChainRow]:
    """Every row in seq order, fetched a chunk at a time (the caller updates rows it
    has seen between chunks: no cursor stays open over a changing table)."""
    after = 0
    while True:
        rows = list(tx.chain_rows(after, UPGRADE_CHUNK))
        if not rows:
            return
        yield from rows
        after = rows[-1][0]
