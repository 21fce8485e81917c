"""Token benchmark for agents' context (issue 6), through a real server.

A scripted 30-turn support conversation: a few hundred background facts (catalogue,
account, knowledge-base articles), then each turn adds, updates (retract + tell) or
retracts a few facts in the conversation's scope. Each turn the agent's prompt gets:

* naive      — every fact known so far, one ``pred(a, b)`` line each;
* window     — the full ``/context/optimize`` window (maxFacts 25) every turn;
* nocturnus  — ``/context/optimize`` on turn 1, then only ``/context/diff`` each turn
  (the ``+``/``-`` lines of its ``formattedText``).

Then the same conversation turns-in (issue 19): each turn is a transcript of a few
prose lines and its new facts written as ``pred(a, b)`` lines, sent to ``POST /context``
(no LLM: the fallback parser reads the fact lines, the prose is skipped):

* naive      — the background facts plus the whole transcript so far, every turn;
* window     — the window ``/context`` answers (maxFacts 25), one line per fact;
* nocturnus  — that window on turn 1, then only ``briefingDelta`` (the facts new since
  the session's previous call).

Tokens are estimated as characters / 4 (rounded up), the same rule for every column.
Then ``/context/optimize`` is timed over 10 000 facts with maxFacts 25: repeated calls
on unchanged knowledge (the cached ranking) and calls right after a write (the ranking
rebuilt). Run: ``python benchmarks/context_tokens.py``.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

MASTER_KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
SCOPE = "ticket-4821"


def tokens(text: str) -> int:
    return (len(text) + 3) // 4


def line(predicate: str, args: list[Any]) -> str:
    return f"{predicate}({', '.join(str(a) for a in args)})"


def start_server(data_dir: Path) -> tuple[subprocess.Popen[bytes], httpx.Client]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "NOCTURNUS_MASTER_KEY": MASTER_KEY}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nocturnus",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        env=env,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    for _ in range(600):
        try:
            if client.get("/health/ready").status_code == 200:
                return process, client
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError("server did not start")


def background() -> list[tuple[str, list[Any]]]:
    facts: list[tuple[str, list[Any]]] = []
    for i in range(120):
        sku = f"sku-{i:03d}"
        facts.append(
            ("product", [sku, ["router", "switch", "license", "cable"][i % 4]])
        )
        facts.append(("price", [sku, 20 + (i * 37) % 900]))
    for i in range(60):
        facts.append(
            (
                "kb_article",
                [f"kb-{i:03d}", ["sso", "billing", "vpn", "dns", "mfa"][i % 5]],
            )
        )
    for user in [
        "dana",
        "eli",
        "fay",
        "gus",
        "hana",
        "ivan",
        "jo",
        "kai",
        "lea",
        "max",
    ]:
        facts.append(("user_of", [user, "acme"]))
        facts.append(
            ("user_role", [user, "admin" if user in ("dana", "kai") else "member"])
        )
    facts += [
        ("customer_plan", ["acme", "enterprise"]),
        ("customer_region", ["acme", "eu-west"]),
        ("sso_provider", ["acme", "okta"]),
        ("seat_count", ["acme", 250]),
        ("account_manager", ["acme", "rosa"]),
    ]
    return facts


# each turn: ("+", pred, args) tell, ("-", pred, args) retract
TURNS: list[list[tuple[str, str, list[Any]]]] = [
    [
        ("+", "issue", ["t-4821", "login_failure"]),
        ("+", "reported_by", ["t-4821", "dana"]),
        ("+", "severity", ["t-4821", "high"]),
    ],
    [
        ("+", "affects_users", ["t-4821", 40]),
        ("+", "started_at", ["t-4821", "2026-04-03T08:10"]),
    ],
    [
        ("+", "recent_change", ["acme", "okta_cutover"]),
        ("+", "change_date", ["okta_cutover", "2026-04-02"]),
    ],
    [("+", "error_code", ["t-4821", "SAML_ISSUER_MISMATCH"])],
    [("-", "severity", ["t-4821", "high"]), ("+", "severity", ["t-4821", "critical"])],
    [
        ("+", "checked", ["t-4821", "idp_metadata"]),
        ("+", "idp_entity_id", ["acme", "okta-prod-2"]),
    ],
    [("+", "sp_expected_issuer", ["acme", "okta-prod-1"])],
    [("+", "hypothesis", ["t-4821", "stale_issuer_config"])],
    [
        ("+", "workaround", ["t-4821", "password_login_for_admins"]),
        ("+", "applied_to", ["password_login_for_admins", "dana"]),
    ],
    [("-", "affects_users", ["t-4821", 40]), ("+", "affects_users", ["t-4821", 212])],
    [
        ("+", "escalated_to", ["t-4821", "identity_team"]),
        ("+", "owner", ["t-4821", "priya"]),
    ],
    [("+", "linked_article", ["t-4821", "kb-010"])],
    [("+", "customer_mood", ["dana", "frustrated"])],
    [("+", "sla_deadline", ["t-4821", "2026-04-03T12:00"])],
    [
        ("+", "checked", ["t-4821", "certificate_expiry"]),
        ("+", "certificate_valid", ["acme", "true"]),
    ],
    [
        ("-", "hypothesis", ["t-4821", "stale_issuer_config"]),
        ("+", "root_cause", ["t-4821", "issuer_not_updated"]),
    ],
    [("+", "fix_planned", ["t-4821", "update_sp_issuer"])],
    [
        ("+", "change_request", ["t-4821", "cr-991"]),
        ("+", "approver", ["cr-991", "rosa"]),
    ],
    [("+", "approved", ["cr-991", "true"])],
    [
        ("+", "fix_applied", ["t-4821", "update_sp_issuer"]),
        ("+", "applied_at", ["cr-991", "2026-04-03T10:42"]),
    ],
    [("+", "verified_login", ["t-4821", "dana"])],
    [
        ("-", "workaround", ["t-4821", "password_login_for_admins"]),
        ("-", "applied_to", ["password_login_for_admins", "dana"]),
    ],
    [
        ("-", "customer_mood", ["dana", "frustrated"]),
        ("+", "customer_mood", ["dana", "relieved"]),
    ],
    [
        ("+", "verified_login", ["t-4821", "eli"]),
        ("+", "verified_login", ["t-4821", "fay"]),
    ],
    [("-", "severity", ["t-4821", "critical"]), ("+", "severity", ["t-4821", "low"])],
    [
        ("+", "postmortem", ["t-4821", "pm-77"]),
        ("+", "action_item", ["pm-77", "cutover_checklist"]),
    ],
    [("+", "credit_offered", ["acme", 500])],
    [("+", "credit_accepted", ["acme", "true"])],
    [
        ("-", "escalated_to", ["t-4821", "identity_team"]),
        ("+", "status", ["t-4821", "resolved"]),
    ],
    [("+", "survey_sent", ["t-4821", "dana"]), ("+", "closed_by", ["t-4821", "priya"])],
]


def conversation(client: httpx.Client) -> None:
    headers = {"X-Tenant-ID": "support_bench"}
    bulk = [{"predicate": p, "args": a, "scope": SCOPE} for p, a in background()]
    assert (
        client.post("/assert/facts", json={"facts": bulk}, headers=headers).status_code
        == 200
    )
    known = {(p, tuple(a)) for p, a in background()}
    window_body = {"scope": SCOPE, "sessionId": "thread-42", "maxFacts": 25}
    rows = []
    for turn, actions in enumerate(TURNS, start=1):
        for op, predicate, args in actions:
            body = {"predicate": predicate, "args": args, "scope": SCOPE}
            if op == "+":
                response = client.post("/tell", json=body, headers=headers)
                known.add((predicate, tuple(args)))
            else:
                response = client.post("/forget", json=body, headers=headers)
                known.discard((predicate, tuple(args)))
            assert response.status_code == 200, response.text
        naive = tokens("\n".join(line(p, list(a)) for p, a in sorted(known, key=str)))
        window = client.post(
            "/context/optimize",
            json={**window_body, "sessionId": None},
            headers=headers,
        ).json()
        if turn == 1:
            sent = client.post(
                "/context/optimize", json=window_body, headers=headers
            ).json()
            ours = sent["tokenEstimate"]
        else:
            delta = client.post(
                "/context/diff", json=window_body, headers=headers
            ).json()
            ours = delta["tokenEstimate"]
        rows.append((turn, len(known), naive, window["tokenEstimate"], ours))
    print("turn  facts  naive  window(25)  nocturnus(optimize, then diff)")
    for turn, count, naive, full, ours in rows:
        print(f"{turn:4d}  {count:5d}  {naive:5d}  {full:10d}  {ours:9d}")
    total_naive = sum(r[2] for r in rows)
    total_window = sum(r[3] for r in rows)
    total_ours = sum(r[4] for r in rows)
    print(
        f"total tokens (chars/4): naive {total_naive}, window {total_window}, nocturnus {total_ours}"
    )
    print(
        f"reduction: naive/nocturnus = {total_naive / total_ours:.1f}x "
        f"({100 * (1 - total_ours / total_naive):.1f}% fewer tokens); "
        f"naive/window = {total_naive / total_window:.1f}x"
    )


def transcript(turn: int, actions: list[tuple[str, str, list[Any]]]) -> str:
    """A turn as an agent would receive it: prose, plus its new facts as fact lines."""
    lines = [f"Agent (turn {turn}): update on ticket t-4821, see the notes below."]
    for op, predicate, args in actions:
        if op == "+":
            lines.append(line(predicate, args))
        else:  # extraction only adds: a retraction stays prose, skipped by the parser
            lines.append(f"Note: {predicate.replace('_', ' ')} no longer {args[-1]}.")
    return "\n".join(lines)


def turns_in(client: httpx.Client) -> None:
    headers = {"X-Tenant-ID": "turns_bench"}
    bulk = [{"predicate": p, "args": a, "scope": SCOPE} for p, a in background()]
    response = client.post("/assert/facts", json={"facts": bulk}, headers=headers)
    assert response.status_code == 200, response.text
    facts_text = "\n".join(line(p, a) for p, a in background())
    said: list[str] = []
    rows = []
    for turn, actions in enumerate(TURNS, start=1):
        text = transcript(turn, actions)
        said.append(text)
        body = {"turns": [text], "scope": SCOPE, "sessionId": "turns-42", "maxFacts": 25}
        answer = client.post("/context", json=body, headers=headers).json()
        window = "\n".join(line(f["predicate"], f["args"]) for f in answer["facts"])
        naive = tokens(facts_text + "\n" + "\n".join(said))
        ours = tokens(window) if turn == 1 else tokens(answer["briefingDelta"] or "")
        rows.append((turn, answer["newFactsExtracted"], naive, tokens(window), ours))
    total_naive = sum(r[2] for r in rows)
    total_window = sum(r[3] for r in rows)
    total_ours = sum(r[4] for r in rows)
    print("\nturns in (POST /context, fallback parser, 30 turns):")
    print("turn  new  naive  window(25)  nocturnus(window, then briefingDelta)")
    for turn, new, naive, full, ours in rows:
        print(f"{turn:4d}  {new:3d}  {naive:5d}  {full:10d}  {ours:9d}")
    print(
        f"total tokens (chars/4): naive {total_naive}, window {total_window}, nocturnus {total_ours}"
    )
    print(
        f"reduction: naive/nocturnus = {total_naive / total_ours:.1f}x; "
        f"naive/window = {total_naive / total_window:.1f}x"
    )


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def latency(client: httpx.Client) -> None:
    headers = {"X-Tenant-ID": "latency_bench"}
    facts = [
        {"predicate": f"p{i % 40}", "args": [f"e{i}", i % 97]} for i in range(10_000)
    ]
    assert (
        client.post("/assert/facts", json={"facts": facts}, headers=headers).status_code
        == 200
    )
    body = {"maxFacts": 25}
    for _ in range(20):
        client.post("/context/optimize", json=body, headers=headers)
    steady = []
    for _ in range(500):
        t0 = time.perf_counter()
        response = client.post("/context/optimize", json=body, headers=headers)
        steady.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200
    after_write = []
    for i in range(100):
        client.post("/tell", json={"predicate": "fresh", "args": [i]}, headers=headers)
        t0 = time.perf_counter()
        client.post("/context/optimize", json=body, headers=headers)
        after_write.append((time.perf_counter() - t0) * 1000)
    baseline = []
    for _ in range(500):
        t0 = time.perf_counter()
        client.get("/health/live")
        baseline.append((time.perf_counter() - t0) * 1000)
    print(
        "\n/context/optimize over 10 000 facts, maxFacts 25 (ms, client side, HTTP included):"
    )
    for name, samples in [
        ("unchanged knowledge", steady),
        ("right after a write", after_write),
        ("GET /health/live (peer)", baseline),
    ]:
        print(
            f"  {name:24s} p50 {statistics.median(samples):6.2f}  p99 {percentile(samples, 99):6.2f}"
        )
    print(
        f"  ratio p99 optimize / p99 health: {percentile(steady, 99) / percentile(baseline, 99):.1f}x"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        process, client = start_server(Path(tmp) / "data")
        try:
            conversation(client)
            turns_in(client)
            latency(client)
        finally:
            process.terminate()
            process.wait(30)


if __name__ == "__main__":
    main()
