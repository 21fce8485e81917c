"""REST endpoints of transactions (issue 18): begin, commit, rollback.

How a request takes part in a transaction (``X-Transaction-ID``) is the endpoint
layer's (:func:`nocturnus.api.endpoint.run_handler`); what a transaction is and where it
lives, ``service/transactions.py``.
"""

from __future__ import annotations

from typing import Any

from sanic import Blueprint

from nocturnus.api.endpoint import Call, endpoint, step_runner
from nocturnus.service import transactions

transactions_api = Blueprint("transactions")


def _store(call: Call) -> transactions.TransactionStore:
    store: transactions.TransactionStore = call.request.app.ctx.transactions
    return store


@endpoint(
    transactions_api,
    "POST",
    "/tx/begin",
    summary="Begin a transaction: writes sent with X-Transaction-ID wait for its commit",
    tenant=True,
    passes_transaction=True,
)
async def begin(call: Call) -> dict[str, Any]:
    store = _store(call)
    tx = await store.open(call.database, call.tenant_id, transactions.owner_of(call.principal))
    return {
        "transactionId": tx.id,
        "database": tx.database,
        "tenant": tx.tenant,
        "timeoutMs": store.timeout_ms,
    }


@endpoint(
    transactions_api,
    "POST",
    "/tx/commit/<tx_id>",
    summary="Commit a transaction: its writes, decided again now, as one event",
    tenant=True,
    passes_transaction=True,
)
async def commit(call: Call) -> dict[str, Any]:
    # committed or not, it ends here: a failed commit wrote nothing
    tx = await _store(call).close(
        call.database, call.tenant_id, transactions.owner_of(call.principal), call.query["tx_id"]
    )
    done = await transactions.commit(
        call.database, tx, step_runner(call.request, call.principal, tx.tenant)
    )
    return {
        "transactionId": done.transaction_id,
        "committed": True,
        "steps": done.steps,
        "events": done.events,
        "seq": done.seq,
        "results": list(done.answers),
        "message": f"Committed {done.transaction_id}",
    }


@endpoint(
    transactions_api,
    "POST",
    "/tx/rollback/<tx_id>",
    summary="Roll a transaction back: its writes are dropped, nothing was logged",
    tenant=True,
    passes_transaction=True,
)
async def rollback(call: Call) -> dict[str, Any]:
    tx = await _store(call).close(
        call.database, call.tenant_id, transactions.owner_of(call.principal), call.query["tx_id"]
    )
    return {
        "transactionId": tx.id,
        "rolledBack": True,
        "steps": len(tx.steps),
        "message": f"Rolled back {tx.id}",
    }
