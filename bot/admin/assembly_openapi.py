"""OpenAPI paths and schemas of the households, meetings and votes routes.

Merged into :data:`bot.admin.openapi.DOCUMENT`; see :mod:`bot.admin.assembly_routes`.
"""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}
_ISO = {
    "type": "string",
    "description": "ISO 8601 in the community's timezone, e.g. 2026-12-05T19:00+08:00",
}
_TIME_IN = {
    "oneOf": [{"type": "string"}, {"type": "number"}],
    "description": "ISO 8601 (local time when it has no offset, e.g. 2026-12-05T19:00) "
    "or epoch seconds",
}
_ANSWER = {"enum": ["attend", "absent", "maybe"], "description": "参加 / 不参加 / 待定"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _path(name: str, kind: str = "integer") -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": kind}}


_HOUSEHOLD_ID = {
    **_path("id", "string"),
    "description": "The normalised address building-unit-room, e.g. 3-2-501",
}
_LIMIT = {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 200}}
_NO_HOUSEHOLD = {"404": _json(_ERROR, "No such household")}
_NO_MEETING = {"404": _json(_ERROR, "No such meeting")}
_NO_VOTE = {"404": _json(_ERROR, "No such vote")}
_MEETING_FIELDS = {
    "title": {"type": "string", "maxLength": 40, "default": "户主坝坝会"},
    "starts_at": _TIME_IN,
    "ends_at": {**_TIME_IN, "description": "Default: two hours after starts_at"},
    "place": {"type": "string", "maxLength": 60},
    "agenda": {
        "oneOf": [
            {"type": "array", "items": {"type": "string", "maxLength": 100}, "maxItems": 20},
            {"type": "string", "description": "One item per line"},
        ]
    },
}

PATHS: dict[str, Any] = {
    "/households/import": {
        "post": {
            "summary": "Import households from CSV",
            "description": "Rows: building, unit, room[, representative openid]; or a header "
            "row naming the columns (building/楼栋, unit/单元, room/房号, representative/户代表, "
            "grid/网格, tags/标签 separated by ;). UTF-8 (with or without BOM) or GBK. An "
            "address that exists is skipped, a row that cannot be read is invalid; each row "
            "is reported. Audited as household.import.",
            "requestBody": {
                "required": True,
                "content": {
                    "text/csv": {"schema": {"type": "string"}},
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["csv"],
                            "properties": {"csv": {"type": "string"}},
                        }
                    },
                },
            },
            "responses": {
                "200": _json(_ref("ImportReport"), "What each row did"),
                "413": _json(_ERROR, "Larger than [assembly] import_max_bytes"),
            },
        }
    },
    "/households": {
        "get": {
            "summary": "Households, by address, a page at a time (or all of one building/grid)",
            "parameters": [
                {"name": "after", "in": "query", "schema": {"type": "string"}},
                _LIMIT,
                {"name": "building", "in": "query", "schema": {"type": "string"}},
                {"name": "grid", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {"200": _json(_ref("HouseholdPage"), "A page")},
        }
    },
    "/households/{id}": {
        "get": {
            "summary": "One household with its members and representative",
            "parameters": [_HOUSEHOLD_ID],
            "responses": {"200": _json(_ref("Household"), "The household"), **_NO_HOUSEHOLD},
        }
    },
    "/households/{id}/representative": {
        "put": {
            "summary": "Change the representative (户代表)",
            "description": "A resident not bound to any household is bound to this one; one "
            "bound elsewhere is 409. The new representative is told. Audited.",
            "parameters": [_HOUSEHOLD_ID],
            "requestBody": _body(
                {
                    "type": "object",
                    "required": ["openid"],
                    "properties": {"openid": {"type": "string"}},
                }
            ),
            "responses": {
                "200": _json(_ref("Household"), "Changed"),
                **_NO_HOUSEHOLD,
                "409": _json(_ERROR, "Bound to another household"),
            },
        }
    },
    "/households/{id}/members/{openid}": {
        "delete": {
            "summary": "Take a member off the household",
            "description": "If they were the representative, the member who bound earliest "
            "takes over (and is told). Audited.",
            "parameters": [_HOUSEHOLD_ID, _path("openid", "string")],
            "responses": {"200": _json(_ref("Household"), "Removed"), **_NO_HOUSEHOLD},
        }
    },
    "/meetings": {
        "post": {
            "summary": "Schedule an assembly (户主坝坝会)",
            "description": "Residents see the next one with 坝坝会. Audited.",
            "requestBody": _body(
                {
                    "type": "object",
                    "required": ["starts_at", "place"],
                    "properties": _MEETING_FIELDS,
                }
            ),
            "responses": {"201": _json(_ref("Meeting"), "Scheduled")},
        },
        "get": {
            "summary": "Every meeting with its answer counts",
            "parameters": [{"name": "after", "in": "query", "schema": {"type": "integer"}}, _LIMIT],
            "responses": {"200": _json(_ref("MeetingPage"), "A page")},
        },
    },
    "/meetings/{number}": {
        "get": {
            "summary": "One meeting: answers by kind against the number of households, quorum",
            "parameters": [_path("number")],
            "responses": {"200": _json(_ref("Meeting"), "The meeting"), **_NO_MEETING},
        },
        "patch": {
            "summary": "Edit time, place or agenda before it starts (audited)",
            "parameters": [_path("number")],
            "requestBody": _body({"type": "object", "properties": _MEETING_FIELDS}),
            "responses": {
                "200": _json(_ref("Meeting"), "Edited"),
                **_NO_MEETING,
                "409": _json(_ERROR, "Started or cancelled"),
            },
        },
    },
    "/meetings/{number}/cancel": {
        "post": {
            "summary": "Cancel it; households that said 参加 or 待定 are told (audited)",
            "parameters": [_path("number")],
            "requestBody": _body(
                {"type": "object", "properties": {"reason": {"type": "string", "maxLength": 200}}}
            ),
            "responses": {
                "200": _json(_ref("Meeting"), "Cancelled"),
                **_NO_MEETING,
                "409": _json(_ERROR, "Cancelled already, or over"),
            },
        }
    },
    "/meetings/{number}/rsvps": {
        "get": {
            "summary": "Households' answers (who comes), with members' suggestions",
            "parameters": [
                _path("number"),
                {"name": "answer", "in": "query", "schema": _ANSWER},
            ],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "meeting": {"type": "integer"},
                            "counts": _ref("RsvpCounts"),
                            "items": {"type": "array", "items": _ref("Rsvp")},
                        },
                    },
                    "Answers",
                ),
                **_NO_MEETING,
            },
        }
    },
    "/agenda-suggestions": {
        "get": {
            "summary": "Topics residents suggested with 议题",
            "parameters": [
                {
                    "name": "meeting",
                    "in": "query",
                    "schema": {"type": "integer"},
                    "description": "A meeting's number; 0 for those sent while none was "
                    "scheduled. Default: the next assembly's and those",
                }
            ],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {"items": {"type": "array", "items": _ref("AgendaItem")}},
                    },
                    "Suggestions, oldest first",
                )
            },
        }
    },
    "/votes": {
        "post": {
            "summary": "Open a vote (最美居民户, 优秀共治卫士, or any question)",
            "description": "One ballot per household, cast by its representative with 投票; "
            "final once cast. At closes_at the ballots are counted and the results posted; "
            "a 公示 period of publicity_days follows, during which residents may object "
            "(异议 …). Audited.",
            "requestBody": _body(
                {
                    "type": "object",
                    "required": ["title", "options", "closes_at"],
                    "properties": {
                        "title": {"type": "string", "maxLength": 40},
                        "options": {
                            "type": "array",
                            "items": {"type": "string", "maxLength": 40},
                            "minItems": 2,
                            "maxItems": 12,
                        },
                        "closes_at": _TIME_IN,
                        "publicity_days": {
                            "type": "integer",
                            "minimum": 0,
                            "maximum": 60,
                            "description": "Default: [assembly] publicity_days",
                        },
                        "seats": {
                            "type": "integer",
                            "minimum": 1,
                            "default": 1,
                            "description": "How many options win",
                        },
                        "meeting": {"type": "integer", "description": "The assembly it follows"},
                    },
                }
            ),
            "responses": {"201": _json(_ref("Vote"), "Opened")},
        },
        "get": {
            "summary": "Every vote",
            "parameters": [{"name": "after", "in": "query", "schema": {"type": "integer"}}, _LIMIT],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "items": {"type": "array", "items": _ref("Vote")},
                            "next": {"type": ["integer", "null"]},
                        },
                    },
                    "A page",
                )
            },
        },
    },
    "/votes/{number}": {
        "get": {
            "summary": "One vote: turnout, and the results once it has closed",
            "parameters": [_path("number")],
            "responses": {"200": _json(_ref("Vote"), "The vote"), **_NO_VOTE},
        }
    },
    "/votes/{number}/objections": {
        "get": {
            "summary": "Objections (异议) residents sent during the 公示 period",
            "parameters": [_path("number")],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {"items": {"type": "array", "items": _ref("Objection")}},
                    },
                    "Objections, oldest first",
                ),
                **_NO_VOTE,
            },
        }
    },
}

SCHEMAS: dict[str, Any] = {
    "ImportReport": {
        "type": "object",
        "properties": {
            "created": {"type": "integer"},
            "skipped": {"type": "integer"},
            "invalid": {"type": "integer"},
            "rows": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "line": {"type": "integer", "description": "Line in the file, from 1"},
                        "result": {"enum": ["created", "skipped", "invalid"]},
                        "household": {"type": "string"},
                        "reason": {"type": "string"},
                    },
                },
            },
        },
    },
    "Household": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "label": {"type": "string", "description": "3栋2单元501"},
            "building": {"type": "string"},
            "unit": {"type": "string"},
            "room": {"type": "string"},
            "representative": {"type": "string", "description": "openid; empty if nobody bound"},
            "members": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "openid": {"type": "string"},
                        "name": {"type": "string", "description": "称呼 the resident gave"},
                        "joined_at": _ISO,
                    },
                },
            },
            "grid": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "created_at": _ISO,
            "created_by": {"type": "string"},
        },
    },
    "HouseholdPage": {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": _ref("Household")},
            "next": {"type": ["string", "null"], "description": "after for the next page"},
            "total": {"type": "integer"},
        },
    },
    "RsvpCounts": {
        "type": "object",
        "properties": {
            "households": {"type": "integer", "description": "All households"},
            "attend": {"type": "integer"},
            "absent": {"type": "integer"},
            "maybe": {"type": "integer"},
            "unanswered": {"type": "integer"},
            "quorum": {
                "type": "object",
                "properties": {
                    "ratio": {"type": "number"},
                    "needed": {"type": "integer", "description": "Households that must attend"},
                    "reached": {"type": "boolean", "description": "attend ≥ needed"},
                },
            },
        },
    },
    "Meeting": {
        "type": "object",
        "properties": {
            "number": {"type": "integer"},
            "title": {"type": "string"},
            "starts_at": _ISO,
            "ends_at": _ISO,
            "place": {"type": "string"},
            "agenda": {"type": "array", "items": {"type": "string"}},
            "status": {"enum": ["scheduled", "cancelled"]},
            "cancel_reason": {"type": "string"},
            "created_at": _ISO,
            "created_by": {"type": "string"},
            "rsvp": _ref("RsvpCounts"),
        },
    },
    "MeetingPage": {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": _ref("Meeting")},
            "next": {"type": ["integer", "null"]},
            "upcoming": {"type": ["integer", "null"], "description": "The next assembly"},
        },
    },
    "Rsvp": {
        "type": "object",
        "properties": {
            "household": {"type": "string"},
            "answer": _ANSWER,
            "by": {"type": "string", "description": "The representative who answered"},
            "at": {"type": ["string", "null"]},
            "suggestions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "openid": {"type": "string"},
                        "name": {"type": "string"},
                        "answer": _ANSWER,
                        "at": _ISO,
                    },
                },
            },
        },
    },
    "AgendaItem": {
        "type": "object",
        "properties": {
            "number": {"type": "integer"},
            "meeting": {"type": ["integer", "null"]},
            "openid": {"type": "string"},
            "household": {"type": "string", "description": "Empty if not bound"},
            "text": {"type": "string"},
            "at": _ISO,
        },
    },
    "Vote": {
        "type": "object",
        "properties": {
            "number": {"type": "integer"},
            "title": {"type": "string"},
            "options": {"type": "array", "items": {"type": "string"}},
            "seats": {"type": "integer"},
            "meeting": {"type": ["integer", "null"]},
            "status": {
                "enum": ["open", "closed", "final"],
                "description": "open: taking ballots; closed: counted, in its 公示 period or "
                "waiting for the results push; final: over",
            },
            "closes_at": _ISO,
            "publicity_days": {"type": "integer"},
            "publicity_until": _ISO,
            "turnout": {"type": "integer", "description": "Households that voted"},
            "results": {
                "type": ["array", "null"],
                "description": "null while open (no running tally)",
                "items": {
                    "type": "object",
                    "properties": {
                        "option": {"type": "string"},
                        "votes": {"type": "integer"},
                        "winner": {"type": "boolean"},
                    },
                },
            },
            "results_text": {"type": ["string", "null"], "description": "As posted to residents"},
            "closed_at": {"type": ["string", "null"]},
            "results_pushed_at": {"type": ["string", "null"]},
            "created_at": _ISO,
            "created_by": {"type": "string"},
        },
    },
    "Objection": {
        "type": "object",
        "properties": {
            "number": {"type": "integer"},
            "vote": {"type": "integer"},
            "openid": {"type": "string"},
            "household": {"type": "string"},
            "text": {"type": "string"},
            "at": _ISO,
        },
    },
}
