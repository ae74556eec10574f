"""Every collection the product stores, with the indexes its queries need.

Backends create exactly these: a query that is not listed here cannot be made,
which keeps every handler's look-up served by an index.
"""

from __future__ import annotations

from storage.contract import CollectionSpec, IndexSpec

RESIDENTS = CollectionSpec(
    "residents",
    indexes=(IndexSpec("by_subscribed", ("subscribed",)),),
)
"""Key: openid. Data: subscribed (bool), first_seen, last_seen (epoch seconds)."""

CONVERSATIONS = CollectionSpec("conversations")
"""Key: openid. Data: state (named, e.g. ``"report:location"``), data (dict), updated_at."""

FEEDBACK = CollectionSpec(
    "feedback",
    indexes=(IndexSpec("by_openid", ("openid",)),),
)
"""Key: zero-padded sequence number. Data: openid, text, created_at, replies (the 留言 flow)."""

COUNTERS = CollectionSpec("counters")
"""Key: sequence name. Data: value (the last number handed out)."""

AUDIT = CollectionSpec("audit")
"""Key: time-ordered id. Data: actor, action, target, detail, at (every admin change)."""

SCHEMA: tuple[CollectionSpec, ...] = (RESIDENTS, CONVERSATIONS, FEEDBACK, COUNTERS, AUDIT)
