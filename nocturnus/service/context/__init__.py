"""Context for agents (issue 6): read models over a tenant's knowledge.

``window`` ranks the visible facts into a window, ``diff`` tells a session what changed
since its last window (``sessions`` keeps those), ``summary`` counts, and ``history``
rebuilds what the tenant knew at a past moment. Per-tenant state they keep between
requests (sessions, the ranking) is the tenant's read model (``service/readmodels.py``);
explicit priorities are events (``tenants.set_priority``), and so are use counts
(``service/uses.py``).
"""
