"""Read models (issue 20): one per projection object and incarnation, typed, off the
event-sourced state."""

from __future__ import annotations

import gc
import weakref

from nocturnus.service.events import TenantDeleted
from nocturnus.service.projection import TenantState, apply
from nocturnus.service.readmodels import ReadModels


def test_a_read_model_lasts_as_long_as_its_projection_and_incarnation() -> None:
    models = ReadModels()
    state = TenantState("acme")
    assert models.known(state) is None
    model = models.of(state)
    assert models.of(state) is model and models.known(state) is model

    apply(state, 1, TenantDeleted(facts=0, rules=0))  # the data goes: so do sessions
    assert models.known(state) is None
    assert models.of(state) is not model

    reloaded = TenantState("acme")  # the projection rebuilt from the log
    assert models.known(reloaded) is None
    fresh = models.of(reloaded)
    assert fresh is not model and models.of(reloaded) is fresh


def test_read_models_do_not_keep_a_dropped_projection_alive() -> None:
    models = ReadModels()
    state = TenantState("gone")
    models.of(state)
    dropped = weakref.ref(state)
    del state
    gc.collect()
    assert dropped() is None
