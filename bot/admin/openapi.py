"""The OpenAPI 3.1 document of ``/admin/api/`` (served at ``/admin/api/openapi.json``)."""

from __future__ import annotations

from typing import Any

from bot.admin import assembly_openapi, schedule_openapi

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _path(name: str, kind: str = "integer") -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": kind}}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


_LIMIT = {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 200}}
_ISO = {
    "type": "string",
    "description": "ISO 8601 in the community's timezone, e.g. 2026-12-05T19:00+08:00",
}
_TIME_IN = {
    "oneOf": [{"type": "string"}, {"type": "number"}],
    "description": "ISO 8601 (local time when it has no offset, e.g. 2026-12-05T19:00) "
    "or epoch seconds",
}
_ACTIVITY_FIELDS = {
    "title": {"type": "string", "maxLength": 40},
    "place": {"type": "string", "maxLength": 60},
    "starts_at": _TIME_IN,
    "ends_at": _TIME_IN,
    "capacity": {"type": "integer", "minimum": 1, "maximum": 2000},
    "points": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 0},
    "remind_before_hours": {"type": "number", "exclusiveMinimum": 0, "maximum": 720, "default": 24},
    "description": {"type": "string", "maxLength": 500},
}
_NO_ACTIVITY = {"404": _json(_ERROR, "No such activity")}
_NO_ITEM = {"404": _json(_ERROR, "No such catalogue item")}

_NO_REPORT = {"404": _json(_ERROR, "No such report")}
_REPORT_FILTERS = [
    {
        "name": "state",
        "in": "query",
        "schema": {"enum": ["reported", "accepted", "resolved", "rejected"]},
    },
    {
        "name": "grid",
        "in": "query",
        "schema": {"type": "string"},
        "description": "A grid's id or name, or @default for the community's default queue "
        "(reports outside every grid)",
    },
    {
        "name": "category",
        "in": "query",
        "schema": {"type": "string"},
        "description": "A configured category, e.g. 排水",
    },
    {
        "name": "since",
        "in": "query",
        "schema": {"type": "string"},
        "description": "Filed at or after: an ISO 8601 date or time, local when it has no "
        "offset (2026-05-01, 2026-05-01T08:00)",
    },
    {
        "name": "until",
        "in": "query",
        "schema": {"type": "string"},
        "description": "Filed at or before; a date alone takes in that whole day",
    },
]
_WINDOW = [p for p in _REPORT_FILTERS if p["name"] in ("since", "until")]
_STATE = {"enum": ["reported", "accepted", "resolved", "rejected"]}

_ERRORS = {
    "400": _json(_ERROR, "Malformed request"),
    "401": _json(_ERROR, "Missing or wrong bearer token"),
    "503": _json(_ERROR, "The admin API is disabled ([admin] api_token is empty)"),
}

_IDEMPOTENCY_FIELD = {
    "type": "string",
    "maxLength": 100,
    "description": "A retried request with the same key counts once (409 if its body differs)",
}
_IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key",
    "in": "header",
    "schema": {"type": "string", "maxLength": 100},
    "description": "Same as the body's key",
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "共治 bot admin API",
        "version": "1",
        "description": "For community staff tools. Every change is written to the audit log; "
        "send `X-Operator: <name>` to say who made it. The public, read-only Open311 "
        "GeoReport v2 endpoints (/open311/v2/services.json, requests.json) are not part of it.",
    },
    "servers": [{"url": "/admin/api"}],
    "security": [{"bearer": []}],
    "paths": {
        "/feedback": {
            "get": {
                "summary": "Residents' 留言, in arrival order",
                "parameters": [
                    {"name": "after", "in": "query", "schema": {"type": "integer"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 200}},
                ],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/FeedbackPage"}, "A page"),
                    **_ERRORS,
                },
            }
        },
        "/feedback/{number}": {
            "get": {
                "summary": "One 留言 with its replies",
                "parameters": [
                    {
                        "name": "number",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer"},
                    }
                ],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Feedback"}, "The 留言"),
                    "404": _json(_ERROR, "No such 留言"),
                    **_ERRORS,
                },
            }
        },
        "/feedback/{number}/replies": {
            "post": {
                "summary": "Answer a 留言: the resident receives it in WeChat",
                "parameters": [
                    {
                        "name": "number",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer"},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["text"],
                                "properties": {"text": {"type": "string", "maxLength": 600}},
                            }
                        }
                    },
                },
                "responses": {
                    "201": _json({"$ref": "#/components/schemas/Feedback"}, "Sent and recorded"),
                    "404": _json(_ERROR, "No such 留言"),
                    "409": _json(_ERROR, "WeChat does not allow a reply now (48-hour window)"),
                    "502": _json(_ERROR, "WeChat did not accept the message"),
                    **_ERRORS,
                },
            }
        },
        "/activities": {
            "get": {
                "summary": "Volunteer activities with sign-up, waitlist and check-in counts",
                "parameters": [
                    {
                        "name": "include_past",
                        "in": "query",
                        "schema": {"type": "boolean", "default": True},
                        "description": "false: only activities that have not ended",
                    }
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"items": {"type": "array", "items": _ref("Activity")}},
                        },
                        "Every activity, by number",
                    ),
                    **_ERRORS,
                },
            },
            "post": {
                "summary": "Create an activity and its check-in QR code",
                "requestBody": _body(_ref("ActivityInput")),
                "responses": {
                    "201": _json(_ref("ActivityDetail"), "Created, with its QR code"),
                    "502": _json(_ERROR, "WeChat did not create the QR code"),
                    **_ERRORS,
                },
            },
        },
        "/activities/{number}": {
            "get": {
                "summary": "One activity with its roster",
                "parameters": [_path("number")],
                "responses": {
                    "200": _json(_ref("ActivityDetail"), "The activity"),
                    **_NO_ACTIVITY,
                    **_ERRORS,
                },
            },
            "patch": {
                "summary": "Change an activity; more places promote the waitlist (they are told)",
                "parameters": [_path("number")],
                "requestBody": _body(_ref("ActivityChanges")),
                "responses": {
                    "200": _json(_ref("ActivityDetail"), "Changed"),
                    **_NO_ACTIVITY,
                    "409": _json(_ERROR, "Cancelled, or fewer places than sign-ups"),
                    **_ERRORS,
                },
            },
        },
        "/activities/{number}/cancel": {
            "post": {
                "summary": "Cancel an activity: everyone signed up or waiting is told",
                "parameters": [_path("number")],
                "requestBody": _body(
                    {
                        "type": "object",
                        "properties": {"reason": {"type": "string", "maxLength": 200}},
                    }
                ),
                "responses": {
                    "200": _json(_ref("ActivityDetail"), "Cancelled"),
                    **_NO_ACTIVITY,
                    "409": _json(_ERROR, "Already cancelled, or already over"),
                    **_ERRORS,
                },
            }
        },
        "/activities/{number}/attendance": {
            "get": {
                "summary": "The attendance export: one row per person on the roster",
                "parameters": [
                    _path("number"),
                    {
                        "name": "format",
                        "in": "query",
                        "schema": {"enum": ["csv", "json"], "default": "csv"},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "CSV (UTF-8 with a BOM, for Excel) as an attachment, "
                        "or JSON with format=json",
                        "content": {
                            "text/csv": {"schema": {"type": "string"}},
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "activity": _ref("Activity"),
                                        "rows": {
                                            "type": "array",
                                            "items": _ref("AttendanceRow"),
                                        },
                                    },
                                }
                            },
                        },
                    },
                    **_NO_ACTIVITY,
                    **_ERRORS,
                },
            }
        },
        "/points/{openid}": {
            "get": {
                "summary": "A resident's balance and ledger, newest entry first",
                "parameters": [
                    _path("openid", "string"),
                    {"name": "skip", "in": "query", "schema": {"type": "integer"}},
                    _LIMIT,
                ],
                "responses": {"200": _json(_ref("LedgerPage"), "A page"), **_ERRORS},
            }
        },
        "/points/{openid}/entries": {
            "post": {
                "summary": "Award (amount > 0) or correct (amount < 0): always a new entry",
                "parameters": [
                    _path("openid", "string"),
                    _IDEMPOTENCY_HEADER,
                ],
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["amount", "reason"],
                        "properties": {
                            "amount": {"type": "integer", "minimum": -10000, "maximum": 10000},
                            "reason": {"type": "string", "maxLength": 100},
                            "key": _IDEMPOTENCY_FIELD,
                        },
                    }
                ),
                "responses": {
                    "201": _json(_ref("Entry"), "Posted"),
                    "200": _json(_ref("Entry"), "This key had posted already: that entry"),
                    "409": _json(_ERROR, "The correction would take the balance below zero"),
                    **_ERRORS,
                },
            }
        },
        "/leaderboard": {
            "get": {
                "summary": "Residents by balance, highest first (may lag by up to a minute)",
                "parameters": [_LIMIT],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "items": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "rank": {"type": "integer"},
                                            "openid": {"type": "string"},
                                            "balance": {"type": "integer"},
                                        },
                                    },
                                }
                            },
                        },
                        "The leaderboard",
                    ),
                    **_ERRORS,
                },
            }
        },
        "/catalogue": {
            "get": {
                "summary": "Every item residents can redeem points for, with stock",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"items": {"type": "array", "items": _ref("Item")}},
                        },
                        "The catalogue",
                    ),
                    **_ERRORS,
                },
            },
            "post": {
                "summary": "Add an item",
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["name", "cost", "stock"],
                        "properties": {
                            "name": {"type": "string", "maxLength": 30},
                            "cost": {"type": "integer", "minimum": 1, "maximum": 10000},
                            "stock": {"type": "integer", "minimum": 0, "maximum": 100000},
                        },
                    }
                ),
                "responses": {"201": _json(_ref("Item"), "Added"), **_ERRORS},
            },
        },
        "/catalogue/{number}": {
            "patch": {
                "summary": "Rename, re-price, or take an item off (active: false) or back on",
                "parameters": [_path("number")],
                "requestBody": _body(
                    {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string", "maxLength": 30},
                            "cost": {"type": "integer", "minimum": 1, "maximum": 10000},
                            "active": {"type": "boolean"},
                        },
                    }
                ),
                "responses": {"200": _json(_ref("Item"), "Changed"), **_NO_ITEM, **_ERRORS},
            }
        },
        "/catalogue/{number}/stock": {
            "post": {
                "summary": "Add stock (amount > 0) or take some off (amount < 0)",
                "parameters": [_path("number"), _IDEMPOTENCY_HEADER],
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["amount", "reason"],
                        "properties": {
                            "amount": {"type": "integer"},
                            "reason": {"type": "string", "maxLength": 100},
                            "key": _IDEMPOTENCY_FIELD,
                        },
                    }
                ),
                "responses": {
                    "200": _json(_ref("Item"), "The item with its new stock"),
                    **_NO_ITEM,
                    "409": _json(_ERROR, "The stock would fall below zero"),
                    **_ERRORS,
                },
            }
        },
        "/redemptions": {
            "get": {
                "summary": "Vouchers in one state (issued: waiting for staff to hand the item over)",
                "parameters": [
                    {
                        "name": "state",
                        "in": "query",
                        "schema": {
                            "enum": ["issued", "used", "failed", "pending"],
                            "default": "issued",
                        },
                    }
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"items": {"type": "array", "items": _ref("Redemption")}},
                        },
                        "The vouchers",
                    ),
                    **_ERRORS,
                },
            }
        },
        "/redemptions/{code}/confirm": {
            "post": {
                "summary": "Hand the item over against the voucher code (once)",
                "parameters": [_path("code", "string")],
                "responses": {
                    "200": _json(_ref("Redemption"), "Confirmed"),
                    "404": _json(_ERROR, "No such voucher code"),
                    "409": _json(_ERROR, "Used already, or not issued"),
                    **_ERRORS,
                },
            }
        },
        "/reports": {
            "get": {
                "summary": "Reports (报事) by number; the filters combine",
                "parameters": [
                    *_REPORT_FILTERS,
                    {"name": "after", "in": "query", "schema": {"type": "integer"}},
                    _LIMIT,
                ],
                "responses": {"200": _json(_ref("ReportPage"), "A page"), **_ERRORS},
            }
        },
        "/reports.csv": {
            "get": {
                "summary": "Every report the filters take, as a spreadsheet (reporter's openid "
                "included)",
                "parameters": _REPORT_FILTERS,
                "responses": {
                    "200": {
                        "description": "CSV (UTF-8 with a BOM, for Excel; Chinese headers) "
                        "as an attachment",
                        "content": {"text/csv": {"schema": {"type": "string"}}},
                    },
                    **_ERRORS,
                },
            }
        },
        "/reports/summary": {
            "get": {
                "summary": "Counts by state and category, median times, satisfaction",
                "parameters": _WINDOW,
                "responses": {"200": _json(_ref("ReportSummary"), "The summary"), **_ERRORS},
            }
        },
        "/reports/{number}": {
            "get": {
                "summary": "One report with its photos and whole history",
                "parameters": [_path("number")],
                "responses": {
                    "200": _json(_ref("ReportDetail"), "The report"),
                    **_NO_REPORT,
                    **_ERRORS,
                },
            }
        },
        "/reports/{number}/state": {
            "post": {
                "summary": "Accept, resolve, reject or reopen (reported) a report; the reporter "
                "and followers are told",
                "parameters": [_path("number")],
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["state"],
                        "properties": {
                            "state": _STATE,
                            "note": {
                                "type": "string",
                                "maxLength": 200,
                                "description": "Required to resolve (what was done) or "
                                "reject (why; 重复 N merges into report N)",
                            },
                        },
                    }
                ),
                "responses": {
                    "200": _json(_ref("ReportDetail"), "Changed (or already in that state)"),
                    **_NO_REPORT,
                    "409": _json(
                        _ERROR, "Not possible from its state (e.g. resolving a rejected report)"
                    ),
                    **_ERRORS,
                },
            }
        },
        "/reports/{number}/transfer": {
            "post": {
                "summary": "Hand an open report to another grid: its workers are alerted",
                "parameters": [_path("number")],
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["grid"],
                        "properties": {
                            "grid": {"type": "string", "description": "The grid's id or name"}
                        },
                    }
                ),
                "responses": {
                    "200": _json(_ref("ReportDetail"), "Transferred"),
                    "404": _json(_ERROR, "No such report, or no such grid"),
                    "409": _json(_ERROR, "The report is closed"),
                    **_ERRORS,
                },
            }
        },
        "/grids": {
            "get": {
                "summary": "Every grid with its area, workers and leader",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"items": {"type": "array", "items": _ref("Grid")}},
                        },
                        "The grids, by id",
                    ),
                    **_ERRORS,
                },
            }
        },
        "/grids/{id}": {
            "put": {
                "summary": "Create or replace a grid; reports are routed by its area from now on",
                "parameters": [_path("id", "string")],
                "requestBody": _body(_ref("GridInput")),
                "responses": {
                    "201": _json(_ref("Grid"), "Created"),
                    "200": _json(_ref("Grid"), "Replaced"),
                    **_ERRORS,
                },
            },
            "delete": {
                "summary": "Remove a grid (its reports stay; only admins can act on them then)",
                "parameters": [_path("id", "string")],
                "responses": {
                    "200": _json(
                        {"type": "object", "properties": {"deleted": {"type": "string"}}},
                        "Removed",
                    ),
                    "404": _json(_ERROR, "No such grid"),
                    **_ERRORS,
                },
            },
        },
        "/audit": {
            "get": {
                "summary": "Every admin change, oldest first",
                "parameters": [
                    {"name": "after", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 200}},
                ],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/AuditPage"}, "A page"),
                    **_ERRORS,
                },
            }
        },
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
            "Feedback": {
                "type": "object",
                "properties": {
                    "number": {"type": "integer"},
                    "openid": {"type": "string"},
                    "text": {"type": "string"},
                    "created_at": {"type": "number"},
                    "replies": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "text": {"type": "string"},
                                "by": {"type": "string"},
                                "at": {"type": "number"},
                            },
                        },
                    },
                },
            },
            "FeedbackPage": {
                "type": "object",
                "properties": {
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Feedback"}},
                    "next": {"type": ["integer", "null"]},
                },
            },
            "ActivityInput": {
                "type": "object",
                "required": ["title", "place", "starts_at", "ends_at", "capacity"],
                "properties": _ACTIVITY_FIELDS,
            },
            "ActivityChanges": {
                "type": "object",
                "description": "Any of the fields of ActivityInput; the rest stay as they are",
                "properties": _ACTIVITY_FIELDS,
            },
            "Activity": {
                "type": "object",
                "properties": {
                    "number": {"type": "integer"},
                    "title": {"type": "string"},
                    "place": {"type": "string"},
                    "description": {"type": "string"},
                    "starts_at": _ISO,
                    "ends_at": _ISO,
                    "capacity": {"type": "integer"},
                    "points": {"type": "integer"},
                    "remind_before_hours": {"type": "number"},
                    "status": {
                        "enum": ["open", "cancelled", "done"],
                        "description": "done: over and closed for check-in",
                    },
                    "cancel_reason": {"type": "string"},
                    "signed_up": {"type": "integer"},
                    "waitlist": {"type": "integer", "description": "How many are waiting"},
                    "checked_in": {"type": "integer"},
                    "places_left": {"type": "integer"},
                    "reminded_at": {"type": ["string", "null"]},
                    "created_at": _ISO,
                    "created_by": {"type": "string"},
                    "qr": {
                        "type": ["object", "null"],
                        "description": "The check-in QR code (show it at the activity)",
                        "properties": {
                            "ticket": {"type": "string"},
                            "url": {"type": "string"},
                            "scene": {"type": "string"},
                            "expires_at": {
                                "type": ["string", "null"],
                                "description": "null: a permanent code",
                            },
                        },
                    },
                },
            },
            "ActivityDetail": {
                "allOf": [
                    _ref("Activity"),
                    {
                        "type": "object",
                        "properties": {
                            "roster": {
                                "type": "object",
                                "properties": {
                                    "members": {"type": "array", "items": {"type": "string"}},
                                    "waitlist": {"type": "array", "items": {"type": "string"}},
                                    "checked_in": {
                                        "type": "object",
                                        "additionalProperties": _ISO,
                                        "description": "openid → when they checked in",
                                    },
                                },
                            }
                        },
                    },
                ]
            },
            "AttendanceRow": {
                "type": "object",
                "properties": {
                    "openid": {"type": "string"},
                    "status": {"type": "string", "description": "confirmed, or waitlisted #n"},
                    "checked_in": {"type": "boolean"},
                    "checked_in_at": {"type": "string"},
                    "points": {"type": "integer"},
                },
            },
            "Entry": {
                "type": "object",
                "properties": {
                    "openid": {"type": "string"},
                    "seq": {"type": "integer"},
                    "amount": {"type": "integer"},
                    "balance": {"type": "integer", "description": "The balance after it"},
                    "kind": {"type": "string"},
                    "reason": {"type": "string"},
                    "by": {"type": "string"},
                    "at": _ISO,
                    "ref": {"type": ["string", "null"]},
                },
            },
            "LedgerPage": {
                "type": "object",
                "properties": {
                    "openid": {"type": "string"},
                    "balance": {"type": "integer"},
                    "total": {"type": "integer", "description": "How many entries in all"},
                    "items": {"type": "array", "items": _ref("Entry")},
                    "next": {
                        "type": ["integer", "null"],
                        "description": "skip for the next page",
                    },
                },
            },
            "Item": {
                "type": "object",
                "properties": {
                    "number": {"type": "integer"},
                    "name": {"type": "string"},
                    "cost": {"type": "integer"},
                    "active": {"type": "boolean"},
                    "stock": {"type": "integer"},
                    "created_at": _ISO,
                },
            },
            "Redemption": {
                "type": "object",
                "properties": {
                    "code": {"type": "string"},
                    "openid": {"type": "string"},
                    "item": {"type": "integer"},
                    "name": {"type": "string"},
                    "cost": {"type": "integer"},
                    "state": {"enum": ["pending", "issued", "used", "failed"]},
                    "note": {"type": "string"},
                    "confirmed_by": {"type": "string"},
                    "created_at": _ISO,
                    "updated_at": _ISO,
                },
            },
            "Report": {
                "type": "object",
                "properties": {
                    "number": {"type": "integer"},
                    "state": _STATE,
                    "state_name": {
                        "type": "string",
                        "description": "待受理, 处理中, 已办结, 已退回",
                    },
                    "category": {"type": "string"},
                    "text": {"type": "string"},
                    "voice": {"type": "boolean", "description": "Described by a voice message"},
                    "grid": {"type": "string", "description": '"": the default queue'},
                    "grid_name": {"type": "string"},
                    "lat": {"type": ["number", "null"]},
                    "lng": {"type": ["number", "null"]},
                    "label": {"type": "string", "description": "The place's name or address"},
                    "reporter": {"type": "string", "description": "The reporter's openid"},
                    "followers": {"type": "array", "items": {"type": "string"}},
                    "assignee": {"type": "string"},
                    "rating": {"type": ["integer", "null"], "minimum": 1, "maximum": 5},
                    "reopened": {"type": "boolean"},
                    "duplicate_of": {"type": ["integer", "null"]},
                    "escalated": {
                        "type": "object",
                        "additionalProperties": {"type": "integer"},
                        "description": "accept / resolve → the level reached (1 leader, 2 admins)",
                    },
                    "photo_count": {"type": "integer"},
                    "latest_note": {"type": "string", "description": "Staff's newest note"},
                    "created_at": _ISO,
                    "accepted_at": {"type": ["string", "null"]},
                    "resolved_at": {"type": ["string", "null"]},
                    "closed_at": {"type": ["string", "null"]},
                    "updated_at": _ISO,
                },
            },
            "ReportDetail": {
                "allOf": [
                    _ref("Report"),
                    {
                        "type": "object",
                        "properties": {
                            "photos": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "media_id": {"type": "string"},
                                        "pic_url": {
                                            "type": "string",
                                            "description": "WeChat's copy (expires in 3 days)",
                                        },
                                        "stored": {
                                            "type": "boolean",
                                            "description": "Our own copy is on disk",
                                        },
                                    },
                                },
                            },
                            "history": {"type": "array", "items": _ref("Transition")},
                        },
                    },
                ]
            },
            "Transition": {
                "type": "object",
                "properties": {
                    "at": _ISO,
                    "by": {
                        "type": "string",
                        "description": "An openid (resident or worker), a member of staff's "
                        "name (X-Operator), or system",
                    },
                    "action": {
                        "type": "string",
                        "description": "filed, followed, accepted, resolved, rejected, "
                        "transferred, reopened, photo, rated, escalated",
                    },
                    "state": {"type": "string", "description": "The state after it"},
                    "note": {"type": "string"},
                },
            },
            "ReportPage": {
                "type": "object",
                "properties": {
                    "items": {"type": "array", "items": _ref("Report")},
                    "next": {"type": ["integer", "null"], "description": "after for the next page"},
                },
            },
            "ReportSummary": {
                "type": "object",
                "properties": {
                    "since": {"type": ["string", "null"]},
                    "until": {"type": ["string", "null"]},
                    "total": {"type": "integer"},
                    "by_state": {"type": "object", "additionalProperties": {"type": "integer"}},
                    "by_category": {
                        "type": "object",
                        "additionalProperties": {"type": "integer"},
                    },
                    "accepted": {"type": "integer", "description": "How many were accepted"},
                    "median_minutes_to_accept": {"type": ["number", "null"]},
                    "resolved": {"type": "integer", "description": "How many were resolved"},
                    "median_minutes_to_resolve": {
                        "type": ["number", "null"],
                        "description": "From filing to (the latest) resolution",
                    },
                    "satisfaction": {
                        "type": "object",
                        "properties": {
                            "count": {"type": "integer"},
                            "mean": {"type": ["number", "null"]},
                            "distribution": {
                                "type": "object",
                                "description": '"1" … "5" → how many ratings of that many stars',
                                "additionalProperties": {"type": "integer"},
                            },
                        },
                    },
                },
            },
            "GridInput": {
                "type": "object",
                "required": ["name", "area"],
                "properties": {
                    "name": {"type": "string", "maxLength": 30},
                    "area": {
                        "type": "object",
                        "description": "GeoJSON Polygon, MultiPolygon, Feature or "
                        "FeatureCollection; positions [longitude, latitude]; holes allowed",
                    },
                    "workers": {"type": "array", "items": {"type": "string"}, "maxItems": 50},
                    "leader": {"type": "string", "description": "The grid leader's openid"},
                    "wecom_url": {
                        "type": "string",
                        "description": "A WeCom group-robot webhook URL (optional)",
                    },
                },
            },
            "Grid": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "name": {"type": "string"},
                    "area": {"type": "object", "description": "GeoJSON MultiPolygon"},
                    "workers": {"type": "array", "items": {"type": "string"}},
                    "leader": {"type": "string"},
                    "wecom_url": {"type": "string"},
                    "updated_at": {"type": ["string", "null"]},
                },
            },
            "AuditPage": {
                "type": "object",
                "properties": {
                    "items": {"type": "array", "items": {"type": "object"}},
                    "next": {"type": ["string", "null"]},
                },
            },
        },
    },
}

# Households, meetings and votes are described in their own module.
DOCUMENT["paths"].update(assembly_openapi.PATHS)
DOCUMENT["components"]["schemas"].update(assembly_openapi.SCHEMAS)
DOCUMENT["paths"].update(schedule_openapi.PATHS)
DOCUMENT["components"]["schemas"].update(schedule_openapi.SCHEMAS)
