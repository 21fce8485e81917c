"""The console in a real browser against a real server (issue 21).

A writer key limited to one tenant signs in, tells facts (one of them an XSS attempt),
teaches a rule, asks and opens the proof, forks and compares a scope, looks at the
context window and its next diff, travels back in time, and is refused another tenant.
An admin then sees databases, tenants, the audit trail and the health charts. Each
view is saved as a screenshot for a reviewer.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.console.conftest import DESKTOP, PHONE, Console
from tests.conftest import ADMIN_KEY
from tests.server import Server

XSS = "<img src=x onerror=window.__pwned=1>"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def world(auth_server: Server) -> Iterator[dict[str, Any]]:
    """A database of our own with two tenants and a writer key for one of them."""
    db = f"console_{uuid.uuid4().hex[:8]}"
    admin = bearer(ADMIN_KEY)
    assert auth_server.request(
        "POST", "/databases", json={"name": db}, headers=admin
    ).is_success
    secret = auth_server.request(
        "POST",
        "/tell",
        tenant="globex",
        database=db,
        headers=admin,
        json={"predicate": "secret", "args": ["globex-only-plan"]},
    )
    assert secret.is_success, secret.text
    minted = auth_server.request(
        "POST",
        "/auth/keys",
        headers=admin,
        json={
            "role": "writer",
            "databases": [db],
            "tenants": ["acme"],
            "name": "acme-writer",
        },
    )
    assert minted.status_code == 201, minted.text
    yield {"server": auth_server, "db": db, "key": minted.json()["key"]}
    auth_server.request("DELETE", f"/admin/databases/{db}", headers=admin)


@pytest.fixture(scope="module")
def signed_in(console: Console, world: dict[str, Any]) -> Console:
    console.open(world["server"].url)
    console.login(world["key"])
    return console


def tell(console: Console, predicate: str, args: str, **extra: str | bool) -> None:
    console.fill("Tell a fact", {"Predicate": predicate, "Arguments": args, **extra})
    console.submit("Tell a fact", "Tell")
    console.see("Stored:", console.form("Tell a fact"))


def test_a_wrong_key_is_refused_with_the_api_message(
    console: Console, world: dict[str, Any]
) -> None:
    console.open(world["server"].url)
    console.find("//input[@id='login-key']").send_keys("nct_not-a-real-key")
    console.press("Sign in")
    error = console.find("//*[@id='login-error']")
    assert error.text == "UNAUTHORIZED: Invalid, disabled, or expired API key"
    console.shot("00-login-refused")


def test_scoped_key_signs_in_to_its_own_tenant(
    signed_in: Console, world: dict[str, Any]
) -> None:
    identity = signed_in.find("//*[@id='identity']").text
    assert (
        "acme-writer" in identity
        and "writer" in identity
        and "tenants acme" in identity
    )
    assert signed_in.field_value("target-database") == world["db"]
    assert signed_in.field_value("target-tenant") == "acme"


def test_tell_facts_and_escape_every_argument(signed_in: Console) -> None:
    c = signed_in
    c.go("Facts")
    tell(c, "parent", "alice, bob")
    tell(c, "parent", "bob, charlie")
    tell(c, "note", f'"{XSS}"')
    row = c.see(XSS, "//main//table")
    assert row.is_displayed()
    assert c.driver.find_elements(c.by.XPATH, "//main//img") == []
    assert c.driver.execute_script("return window.__pwned") is None
    c.fill("Filter facts", {"Predicate": "parent", "Argument pattern": "?_, charlie"})
    c.submit("Filter facts", "Filter")
    c.see("Facts 1–1 of 1")
    c.see("parent(bob, charlie)", "//main//table")
    c.shot("01-facts")
    c.fill("Filter facts", {"Predicate": "", "Argument pattern": ""})
    c.submit("Filter facts", "Filter")
    c.see("Facts 1–3 of 3")


def test_facts_come_in_pages_that_follow_the_server_cursor(
    signed_in: Console, world: dict[str, Any]
) -> None:
    many = [{"predicate": "item", "args": [f"i{n:03d}"]} for n in range(120)]
    told = world["server"].request(
        "POST",
        "/assert/facts",
        tenant="acme",
        database=world["db"],
        headers=bearer(world["key"]),
        json={"facts": many},
    )
    assert told.json()["asserted"] == 120, told.text
    c = signed_in
    c.go("Facts")
    c.fill("Filter facts", {"Predicate": "item"})
    c.submit("Filter facts", "Filter")
    seen: list[str] = []
    for first, last in ((1, 50), (51, 100), (101, 120)):
        c.see(f"Facts {first}–{last} of 120")
        rows = c.driver.find_elements(c.by.XPATH, "//main//tbody/tr/td[1]")
        seen += [r.text for r in rows]
        if last < 120:
            c.press("Next page")
    assert seen == [f"item(i{n:03d})" for n in range(120)]
    assert not c.find("//button[normalize-space()='Next page']").is_enabled()
    c.press("Previous page")
    c.see("Facts 51–100 of 120")
    retracted = world["server"].request(
        "POST",
        "/retract/pattern",
        tenant="acme",
        database=world["db"],
        headers=bearer(world["key"]),
        json={"predicate": "item", "args": ["?_"]},
    )
    assert retracted.json()["retracted"] == 120


def test_teach_a_rule_and_see_its_text(signed_in: Console) -> None:
    c = signed_in
    c.go("Rules")
    c.fill("Teach a rule", {"Predicate": "grandparent"})
    head = c.driver.find_elements(c.by.XPATH, c.form("Teach a rule") + "//fieldset")
    head_args, first_args = (
        f.find_element(c.by.XPATH, ".//label[normalize-space()='Arguments']")
        for f in head[:2]
    )
    c.driver.find_element(c.by.ID, head_args.get_attribute("for")).send_keys("?x, ?z")
    body_predicate = head[1].find_element(c.by.XPATH, ".//input[@name='predicate']")
    body_predicate.send_keys("parent")
    c.driver.find_element(c.by.ID, first_args.get_attribute("for")).send_keys("?x, ?y")
    c.press("Add body literal", c.form("Teach a rule"))
    second = c.driver.find_elements(c.by.XPATH, c.form("Teach a rule") + "//fieldset")[
        2
    ]
    second.find_element(c.by.XPATH, ".//input[@name='predicate']").send_keys("parent")
    second.find_element(c.by.XPATH, ".//input[@name='args']").send_keys("?y, ?z")
    c.submit("Teach a rule", "Teach")
    c.see("grandparent(?x, ?z) :- parent(?x, ?y), parent(?y, ?z)", "//main//table")
    c.shot("02-rules")


def test_ask_and_open_the_proof_tree(signed_in: Console) -> None:
    c = signed_in
    c.go("Ask")
    c.fill("Ask a question", {"Predicate": "grandparent", "Arguments": "?who, charlie"})
    c.submit("Ask a question", "Ask")
    c.see("1 answer")
    c.see("grandparent(alice, charlie)", "//main//ol")
    assert c.find("//main//dl[@class='bindings']").text.split() == ["?who", "alice"]
    leaves = c.driver.find_elements(
        c.by.XPATH, "//ul[@class='proof']//li[@class='leaf']"
    )
    assert [leaf.text for leaf in leaves if leaf.is_displayed()] == [
        "stored fact parent(alice, bob)",
        "stored fact parent(bob, charlie)",
    ]
    summary = c.find("//ul[@class='proof']//summary")
    assert "by rule" in summary.text and "grandparent(?x, ?z) :-" in summary.text
    summary.click()  # collapse with a click, open again with the keyboard
    assert not any(leaf.is_displayed() for leaf in leaves)
    from selenium.webdriver.common.keys import Keys

    summary.send_keys(Keys.ENTER)
    c.until(
        lambda: all(leaf.is_displayed() for leaf in leaves), "the proof to open again"
    )
    c.viewport(DESKTOP[0], 1000)  # the whole view in one picture (the README's)
    try:
        c.driver.execute_script("window.scrollTo(0, 0)")
        c.shot("03-ask-proof")
    finally:
        c.viewport(*DESKTOP)


def test_ask_pages_answers_with_the_server_cursor(signed_in: Console) -> None:
    c = signed_in
    c.go("Ask")
    c.fill(
        "Ask a question",
        {
            "Predicate": "parent",
            "Arguments": "?x, ?y",
            "Scope (blank: every scope)": "main",
            "At most (answers)": "1",
        },
    )
    c.submit("Ask a question", "Ask")
    c.see("1 answer so far")
    c.press("More answers")
    c.see("2 answers")
    answers = c.driver.find_elements(c.by.XPATH, "//main//p[@class='answer-head']/code")
    assert [a.text for a in answers] == ["parent(alice, bob)", "parent(bob, charlie)"]
    more = "//main//button[normalize-space()='More answers']"
    assert not c.driver.find_element(c.by.XPATH, more).is_displayed()


def test_text_statements_run_with_answers_and_proofs(signed_in: Console) -> None:
    c = signed_in
    c.go("Ask")
    c.fill("Run text statements", {"Statements": "parent(carol, dave"})
    c.submit("Run text statements", "Run")
    error = c.find(c.form("Run text statements") + "//*[@role='alert']")
    assert error.text.startswith("VALIDATION_ERROR: command: line 1, column ")
    script = "parent(carol, dave).\n?- parent(carol, ?who).\n" + (
        "EXPLAIN grandparent(alice, charlie);\nRETRACT parent(carol, dave);"
    )
    c.fill("Run text statements", {"Statements": script})
    c.submit("Run text statements", "Run")
    c.see("line 1: Stored: parent(carol, dave)", c.form("Run text statements"))
    c.see("line 2: Inferred 1 result(s)", c.form("Run text statements"))
    tree = c.form("Run text statements") + "//ul[@class='proof']"
    c.see("grandparent(alice, charlie)", tree)
    leaves = c.driver.find_elements(c.by.XPATH, tree + "//li[@class='leaf']")
    assert [leaf.text for leaf in leaves] == [
        "stored fact parent(alice, bob)",
        "stored fact parent(bob, charlie)",
    ]
    c.see("line 4: Forgotten: parent(carol, dave)", c.form("Run text statements"))
    c.shot("03b-text-statements")


def test_fork_and_compare_a_scope_side_by_side(signed_in: Console) -> None:
    c = signed_in
    c.go("Scopes")
    c.fill("Fork", {"New scope": "what-if"})
    c.submit("Fork", "Fork")
    c.see("Forked main into what-if: 3 facts copied")
    c.go("Facts")
    c.fill(
        "Tell a fact",
        {
            "Negated (NOT …)": True,
            "Scope": "what-if",
            "On contradiction": "NEWEST_WINS",
        },
    )
    tell(c, "parent", "bob, charlie")
    c.fill("Tell a fact", {"Negated (NOT …)": False})
    tell(c, "parent", "bob, dana")
    c.go("Scopes")
    c.fill("Compare", {"Source scope": "what-if", "Target scope": "main"})
    c.submit("Compare", "Compare")
    c.see("1 conflict, 1 only in what-if, 0 only in main, 2 the same")
    conflict = c.find("//main//tr[contains(@class, 'conflict')]")
    cells = [td.text for td in conflict.find_elements(c.by.TAG_NAME, "td")]
    assert cells == ["NOT parent(bob, charlie)", "parent(bob, charlie)", "conflict"]
    background = conflict.find_element(c.by.TAG_NAME, "td").value_of_css_property(
        "background-color"
    )
    assert background not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)")
    c.find("//main//tr[contains(@class, 'only-source')]")
    c.shot("04-scopes-diff")
    c.fill("Merge", {
        "Source scope": "what-if", "Into scope": "main", "On conflict": "TARGET_WINS",
    })
    c.submit("Merge", "Merge")
    c.confirm()
    c.see("Merged 1 facts (1 conflicts, TARGET_WINS)", c.form("Merge"))
    c.submit("Compare", "Compare")
    c.see("1 conflict, 0 only in what-if, 0 only in main, 3 the same")


def test_context_window_with_salience_and_the_next_diff(
    signed_in: Console, world: dict[str, Any]
) -> None:
    c = signed_in
    c.go("Context")
    c.fill(
        "Window request",
        {
            "Goals (one per line, optional)": "grandparent(?x, charlie)",
            "Scope (blank: every scope)": "main",
        },
    )
    c.submit("Window request", "Show window")
    c.see("goal-driven")
    inferred = c.find("//main//tr[td[normalize-space()='inferred']]")
    assert "grandparent(alice, charlie)" in inferred.text
    meters = c.driver.find_elements(c.by.XPATH, "//main//meter")
    assert meters and all(0 <= float(m.get_attribute("value")) <= 1 for m in meters)
    c.shot("05-context-window")
    told = world["server"].request(
        "POST",
        "/tell",
        tenant="acme",
        database=world["db"],
        headers=bearer(world["key"]),
        json={"predicate": "parent", "args": ["erin", "frank"]},
    )
    assert told.is_success, told.text
    c.submit("Window request", "Next diff")
    c.see("1 added · 0 removed")
    c.see("parent(erin, frank)", "//main//table")
    c.shot("06-context-diff")


def test_time_travel_shows_a_forgotten_fact(
    signed_in: Console, world: dict[str, Any]
) -> None:
    c = signed_in
    c.go("Facts")
    tell(c, "status", "order7, open")
    time.sleep(0.05)  # the instant must fall strictly between the tell and the forget
    instant = int(time.time() * 1000)
    time.sleep(0.05)
    c.fill("Forget a fact", {"Predicate": "status", "Arguments": "order7, open"})
    c.submit("Forget a fact", "Forget")
    c.confirm()
    c.see("1 retracted", c.form("Forget a fact"))
    c.go("Time travel")
    c.fill(
        "Recall at an instant",
        {
            "Predicate": "status",
            "Arguments (pattern)": "order7, ?_",
            "Instant (epoch milliseconds)": str(instant),
        },
    )
    c.submit("Recall at an instant", "Recall")
    c.see("1 facts at")
    row = c.find("//main//tr[td[normalize-space()='gone since']]")
    assert "status(order7, open)" in row.text
    c.shot("07-time-travel")


def test_a_scoped_key_cannot_see_another_tenant(
    signed_in: Console, world: dict[str, Any]
) -> None:
    c = signed_in
    tenant = c.driver.find_element(c.by.ID, "target-tenant")
    tenant.clear()
    tenant.send_keys("globex")
    c.press("Use")
    c.go("Facts")
    error = c.find("//main//*[@role='alert']")
    assert (
        error.text
        == "FORBIDDEN: Key 'acme-writer' is not authorized for tenant 'globex'"
    )
    assert c.driver.find_elements(c.by.XPATH, "//main//table") == []
    c.shot("08-other-tenant-refused")
    c.go("Ask")
    c.fill("Ask a question", {"Predicate": "secret", "Arguments": "?plan"})
    c.submit("Ask a question", "Ask")
    c.find("//main//*[@role='alert' and contains(., 'FORBIDDEN')]")
    c.go("Databases")
    c.find(
        "//main//*[@role='alert' and contains(., 'lacks permission: database_list')]"
    )
    assert c.driver.find_elements(c.by.XPATH, c.form("Create a database")) == []
    assert "globex-only-plan" not in c.driver.page_source
    c.shot("09-databases-refused")


def test_phone_width_and_keyboard(signed_in: Console, world: dict[str, Any]) -> None:
    c = signed_in
    tenant = c.driver.find_element(c.by.ID, "target-tenant")
    tenant.clear()
    tenant.send_keys("acme")
    c.press("Use")
    c.viewport(*PHONE)
    try:
        c.go("Facts")
        c.see("Facts 1–")
        width = c.driver.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth]"
        )
        assert width[0] <= width[1], width
        c.shot("10-facts-phone")
        c.go("Scopes")
        c.fill("Compare", {"Source scope": "what-if", "Target scope": "main"})
        c.submit("Compare", "Compare")
        c.find("//main//tr[contains(@class, 'conflict')]")
        c.shot("11-scopes-phone")
    finally:
        c.viewport(*DESKTOP)
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    c.driver.refresh()
    c.find("//nav//a")
    ActionChains(c.driver).send_keys(Keys.TAB).perform()
    focused = c.driver.switch_to.active_element
    assert focused.text == "Skip to content"
    assert focused.value_of_css_property("outline-style") != "none"
    link = c.driver.find_element(c.by.ID, "nav-rules")
    link.send_keys(Keys.ENTER)
    c.until(
        lambda: (
            c.driver.switch_to.active_element.text == "Rules"
            and c.driver.switch_to.active_element.tag_name == "h2"
        ),
        "focus on the view title",
    )


def test_admin_manages_databases_and_tenants(
    signed_in: Console, world: dict[str, Any]
) -> None:
    c = signed_in
    c.press("Sign out")  # the scoped key's tab: nothing of it stays behind
    c.find("//input[@id='login-key']")
    assert c.driver.execute_script("return sessionStorage.length") == 0
    assert c.driver.find_elements(c.by.XPATH, "//main/*") == []
    assert c.driver.find_elements(c.by.XPATH, "//datalist/option") == []
    c.login(ADMIN_KEY)
    c.go("Databases")
    row = c.find(f"//main//tr[td/code[normalize-space()='{world['db']}']]")
    cells = row.find_elements(c.by.TAG_NAME, "td")
    held = (
        world["server"]
        .request(
            "GET", f"/admin/databases/{world['db']}/tenants", headers=bearer(ADMIN_KEY)
        )
        .json()["tenants"]
    )
    assert cells[1].text == str(len(held))
    scratch = f"scratch_{uuid.uuid4().hex[:6]}"
    c.fill("Create a database", {"Name": scratch})
    c.submit("Create a database", "Create database")
    c.see(f"Created {scratch}")
    c.find(f"//main//tr[td/code[normalize-space()='{scratch}']]")
    c.press("Tenants", f"//main//tr[td/code[normalize-space()='{world['db']}']]")
    c.find("//main//tr[td/code[normalize-space()='globex']]")
    c.shot("12-databases")
    c.press("Delete", f"//main//tr[td/code[normalize-space()='{scratch}']]")
    c.confirm(typed=scratch)
    c.see(f"Deleted database {scratch}")
    c.until(
        lambda: (
            not c.driver.find_elements(
                c.by.XPATH, f"//main//tr[td/code[normalize-space()='{scratch}']]"
            )
        ),
        "the row to go",
    )


def test_admin_reads_the_audit_trail(console: Console) -> None:
    c = console
    c.go("Audit")
    since = c.find("//main//input[@name='since']")
    started = time.strftime("%Y-%m-%dT%H:%M", time.localtime(time.time() - 120))
    c.driver.execute_script("arguments[0].value = arguments[1]", since, started)
    c.submit("Filter the audit trail", "Show")
    c.see("database_deleted", "//main//table")
    c.see("key_created", "//main//table")
    c.shot("13-audit")


def test_health_and_live_charts(console: Console) -> None:
    c = console
    c.go("Health")
    c.see("Status: ok")
    c.until(
        lambda: (
            len(c.driver.find_elements(c.by.CSS_SELECTOR, "svg.chart polyline")) >= 4
        ),
        "two scrapes of /metrics to draw the charts",
    )
    labels = [
        s.get_attribute("aria-label")
        for s in c.driver.find_elements(c.by.CSS_SELECTOR, "svg.chart")
    ]
    assert any(label.startswith("Requests: latest") for label in labels), labels
    c.shot("14-health")
    assert c.script_errors() == []


def test_console_without_auth(console: Console, server: Server, tenant: str) -> None:
    c = console
    c.open(server.url)
    c.find("//nav//a")
    assert "Authentication off" in c.find("//*[@id='identity']").text
    assert not c.driver.find_element(c.by.ID, "login").is_displayed()
    target = c.driver.find_element(c.by.ID, "target-tenant")
    target.clear()
    target.send_keys(tenant)
    c.press("Use")
    c.go("Facts")
    tell(c, "plan", "enterprise")
    c.go("Ask")
    c.fill("Ask a question", {"Predicate": "plan", "Arguments": "?tier"})
    c.submit("Ask a question", "Ask")
    c.see("plan(enterprise)", "//main//ol")
    c.shot("15-auth-off-ask")
    assert c.script_errors() == []
