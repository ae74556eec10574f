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

ACTIVITIES = CollectionSpec(
    "activities",
    indexes=(IndexSpec("by_status", ("status",)),),
)
"""Key: zero-padded activity number. Data: the activity and its roster (members, waitlist,
checked_in), so one compare-and-set decides every seat: capacity is never oversold."""

SIGNUPS = CollectionSpec(
    "signups",
    indexes=(IndexSpec("by_openid", ("openid",)),),
)
"""Key: ``openid:activity``. Data: a resident's view of one sign-up (derived from the roster)."""

LEDGER = CollectionSpec(
    "ledger",
    indexes=(IndexSpec("by_idem", ("account", "idem"), unique=True),),
)
"""Key: ``account:seq`` (seq zero-padded, per account). Data: account, amount, balance after
it, idem (unique per account: an operation posts once to each account it touches), reason,
kind, by, at. Append-only: never updated."""

BALANCES = CollectionSpec("balances")
"""Key: account (``pts:<openid>``, ``stock:<item>``). Data: seq, balance: a cache of the
account's last ledger entry, rolled forward from the ledger whenever it lags."""

CATALOGUE = CollectionSpec("catalogue")
"""Key: zero-padded item number. Data: name, cost, active, created_at (stock is a ledger)."""

REDEMPTIONS = CollectionSpec(
    "redemptions",
    indexes=(IndexSpec("by_openid", ("openid",)), IndexSpec("by_state", ("state",))),
)
"""Key: voucher code. Data: openid, item, cost, state (pending/issued/used/failed), times."""

REPORTS = CollectionSpec(
    "reports",
    indexes=(
        IndexSpec("by_reporter", ("reporter",)),
        IndexSpec("by_state", ("state",)),
        IndexSpec("by_grid_state", ("grid", "state")),
        IndexSpec("by_category_state", ("category", "state")),
        IndexSpec("by_category_cell_state", ("category", "cell", "state")),
    ),
)
"""Key: zero-padded report number. Data: the report (报事) with its whole history of
transitions, each applied by one compare-and-set, so a retried transition applies once."""

FOLLOWS = CollectionSpec("follows", indexes=(IndexSpec("by_openid", ("openid",)),))
"""Key: ``openid:report``. Data: openid, report, at (a resident following another's report)."""

GRIDS = CollectionSpec("grids")
"""Key: grid id. Data: name, area (GeoJSON MultiPolygon), workers, leader, wecom_url."""

ALERTS = CollectionSpec("alerts", indexes=(IndexSpec("by_state", ("state",)),))
"""Key: ``report:event:channel:recipient``, so one transition alerts each recipient once.
Data: the message, state (pending/sent/failed), attempts, next_at, last_error."""

SCHEDULES = CollectionSpec("schedules")
"""Key: schedule id. Data: name, cron, template, audience, channel, enabled, last_fire."""

SCHEDULE_RUNS = CollectionSpec("schedule_runs", indexes=(IndexSpec("by_schedule", ("schedule",)),))
"""Key: ``schedule:fire:trigger:ran``. Data: one run of a schedule and the push it claimed."""

HOUSEHOLDS = CollectionSpec(
    "households",
    indexes=(IndexSpec("by_building", ("building",)), IndexSpec("by_grid", ("grid",))),
)
"""Key: normalised address ``building-unit-room``. Data: building, unit, room, representative,
members (openid, name, joined_at), grid, tags: binding and handover are one compare-and-set."""

MEMBERSHIPS = CollectionSpec("memberships")
"""Key: openid. Data: household, at (a resident's one household; the household's members
list is the truth when they differ)."""

MEETINGS = CollectionSpec("meetings", indexes=(IndexSpec("by_status", ("status",)),))
"""Key: zero-padded meeting number. Data: title, starts_at, ends_at, place, agenda, status."""

RSVPS = CollectionSpec("rsvps", indexes=(IndexSpec("by_meeting_answer", ("meeting", "answer")),))
"""Key: ``meeting:household``. Data: answer (attend/absent/maybe, "" before the representative
answers), by, at, members' suggestions: one record per household, counted by index."""

AGENDA = CollectionSpec("agenda", indexes=(IndexSpec("by_meeting", ("meeting",)),))
"""Key: zero-padded number. Data: meeting (0: none scheduled yet), openid, household, text, at."""

VOTES = CollectionSpec("votes", indexes=(IndexSpec("by_status", ("status",)),))
"""Key: zero-padded vote number. Data: title, options, closes_at, publicity_days, seats,
status (open/closed/final), results (ballots per option, counted at the close)."""

BALLOTS = CollectionSpec("ballots", indexes=(IndexSpec("by_vote_choice", ("vote", "choice")),))
"""Key: ``vote:household``, inserted only if absent: one ballot per household. Data: choice, by, at."""

OBJECTIONS = CollectionSpec("objections", indexes=(IndexSpec("by_vote", ("vote",)),))
"""Key: zero-padded number. Data: vote, openid, household, text, at (异议 during 公示)."""

CAMPAIGNS = CollectionSpec("campaigns", indexes=(IndexSpec("by_state", ("state",)),))
"""Key: ``<campaign>:<period>``, inserted once: one push per period, whoever asks. Data: channel,
message (text, template_id, template_data, url), audience, state (claimed/running/done), total,
created_at, by, the recipients (only while claimed), mass batch progress, pause, counts."""

DELIVERIES = CollectionSpec(
    "deliveries", indexes=(IndexSpec("by_campaign_state", ("campaign", "state")),)
)
"""Key: ``<campaign key>|<openid>``. Data: campaign, recipient, state (pending/sending/retry/
sent/failed/unknown), errcode, reason, attempts, next_at, lease_until, owner, batch, msgid,
sent_at: one per recipient, so a crash or a second process never sends one twice."""

MASS_QUOTA = CollectionSpec("mass_quota")
"""Key: ``<openid>|<YYYY-MM>``. Data: openid, month, count, campaigns: the mass messages a
follower was sent that month (WeChat allows 4 a month per follower of a service account)."""

USERS = CollectionSpec("users")
"""Key: login name. Data: role (admin/grid), password_hash (Argon2id), openid (a grid
worker's WeChat openid: their grids are the ones that list it), display name, failures,
locked_until, created_at, created_by."""

SESSIONS = CollectionSpec("sessions", indexes=(IndexSpec("by_user", ("user",)),))
"""Key: SHA-256 of the session token (the token itself is only in the browser's cookie).
Data: user, csrf, created_at, seen_at, expires_at."""

SCHEMA: tuple[CollectionSpec, ...] = (
    RESIDENTS,
    CONVERSATIONS,
    FEEDBACK,
    COUNTERS,
    AUDIT,
    ACTIVITIES,
    SIGNUPS,
    LEDGER,
    BALANCES,
    CATALOGUE,
    REDEMPTIONS,
    REPORTS,
    FOLLOWS,
    GRIDS,
    ALERTS,
    SCHEDULES,
    SCHEDULE_RUNS,
    HOUSEHOLDS,
    MEMBERSHIPS,
    MEETINGS,
    RSVPS,
    AGENDA,
    VOTES,
    BALLOTS,
    OBJECTIONS,
    CAMPAIGNS,
    DELIVERIES,
    MASS_QUOTA,
    USERS,
    SESSIONS,
)
