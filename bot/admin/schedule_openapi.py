"""OpenAPI paths and schemas of ``/admin/api/schedules`` (see :mod:`bot.admin.schedule_routes`)."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_ISO = {"type": "string", "description": "ISO 8601 with the community's offset"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_FIELDS: dict[str, Any] = {
    "name": {"type": "string", "maxLength": 30},
    "cron": {
        "type": "string",
        "description": "Five fields (minute hour day month weekday) in [scheduler] timezone, "
        "e.g. `0 9 1 * *` for the 1st of each month at 09:00",
    },
    "template": {
        "type": "string",
        "maxLength": 600,
        "description": "The message; {time} {place} {agenda} {month} of the next assembly",
    },
    "audience": {
        "type": "string",
        "description": "all, rsvp:coming, building:<楼栋>, grid:<id> or tag:<标签>",
    },
    "channel": {"enum": ["template", "mass", "custom"]},
    "template_id": {"type": "string"},
    "period_format": {
        "type": "string",
        "description": "strftime format naming a run's period; one push per period",
    },
    "enabled": {"type": "boolean"},
}
_ERRORS = {
    "400": _json(_ERROR, "Invalid input (a message in Chinese)"),
    "401": _json(_ERROR, "Missing or wrong bearer token"),
    "404": _json(_ERROR, "No such schedule"),
}
_ONE = {"200": _json(_ref("Schedule"), "The schedule"), **_ERRORS}

PATHS: dict[str, Any] = {
    "/schedules": {
        "get": {
            "summary": "Every schedule with its next run times",
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {"items": {"type": "array", "items": _ref("Schedule")}},
                    },
                    "The schedules",
                ),
                **_ERRORS,
            },
        },
        "post": {
            "summary": "Create a schedule (takes effect at once; audited)",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["id", "name", "cron", "template", "audience", "channel"],
                            "properties": {"id": {"type": "string"}, **_FIELDS},
                        }
                    }
                },
            },
            "responses": {
                "201": _json(_ref("Schedule"), "Created"),
                "409": _json(_ERROR, "The id exists"),
                **_ERRORS,
            },
        },
    },
    "/schedules/{id}": {
        "get": {
            "summary": "One schedule with its history of runs and their delivery counts",
            "parameters": [_ID],
            "responses": _ONE,
        },
        "patch": {
            "summary": "Edit a schedule: takes effect at once, no restart (audited)",
            "parameters": [_ID],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"type": "object", "properties": _FIELDS}}
                },
            },
            "responses": _ONE,
        },
    },
    "/schedules/{id}/pause": {
        "post": {"summary": "Pause (audited)", "parameters": [_ID], "responses": _ONE}
    },
    "/schedules/{id}/resume": {
        "post": {
            "summary": "Resume (audited); what came due while paused is not sent",
            "parameters": [_ID],
            "responses": _ONE,
        }
    },
    "/schedules/{id}/preview": {
        "get": {
            "summary": "The next 5 run times, of the saved cron or of `?cron=` before saving it",
            "parameters": [_ID, {"name": "cron", "in": "query", "schema": {"type": "string"}}],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "cron": {"type": "string"},
                            "next_runs": {"type": "array", "items": _ISO},
                        },
                    },
                    "Run times",
                ),
                **_ERRORS,
            },
        }
    },
    "/schedules/{id}/run": {
        "post": {
            "summary": "Run now: pushes for the current period (202), or nothing if that period "
            "was pushed already (200); audited",
            "parameters": [_ID],
            "responses": {
                "202": _json(_ref("ScheduleRun"), "Started"),
                "200": _json(_ref("ScheduleRun"), "This period was pushed already"),
                **_ERRORS,
            },
        }
    },
    "/schedules/{id}/runs": {
        "get": {
            "summary": "The history of runs with their delivery counts",
            "parameters": [_ID],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {"items": {"type": "array", "items": _ref("ScheduleRun")}},
                    },
                    "Runs, newest first",
                ),
                **_ERRORS,
            },
        }
    },
}

_KEY = {
    "name": "key",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "<campaign>:<period>, e.g. assembly-call:2026-12",
}
_PUSH_ERRORS = {**_ERRORS, "404": _json(_ERROR, "No such push")}
PATHS.update(
    {
        "/pushes/{key}": {
            "get": {
                "summary": "A push's progress while it runs (pending, sending, sent, failed, unknown)",
                "parameters": [_KEY],
                "responses": {"200": _json({"type": "object"}, "Progress"), **_PUSH_ERRORS},
            }
        },
        "/pushes/{key}/deliveries": {
            "get": {
                "summary": "Recipients in one state (default failed), with WeChat's error code",
                "parameters": [
                    _KEY,
                    {
                        "name": "state",
                        "in": "query",
                        "schema": {
                            "enum": ["pending", "retry", "sending", "sent", "failed", "unknown"]
                        },
                    },
                ],
                "responses": {"200": _json({"type": "object"}, "Deliveries"), **_PUSH_ERRORS},
            }
        },
        "/pushes/{key}/retry-unknown": {
            "post": {
                "summary": "Send again the deliveries whose answer was lost (some may arrive twice; audited)",
                "parameters": [_KEY],
                "responses": {
                    "200": _json({"type": "object"}, "How many went back to pending"),
                    **_PUSH_ERRORS,
                },
            }
        },
    }
)

SCHEMAS: dict[str, Any] = {
    "Schedule": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            **_FIELDS,
            "next_run": {**_ISO, "nullable": True},
            "next_runs": {"type": "array", "items": _ISO},
            "last_fire": {**_ISO, "nullable": True},
            "updated_at": {**_ISO, "nullable": True},
            "updated_by": {"type": "string"},
            "runs": {"type": "array", "items": _ref("ScheduleRun")},
        },
    },
    "ScheduleRun": {
        "type": "object",
        "properties": {
            "fire_at": _ISO,
            "ran_at": _ISO,
            "trigger": {"enum": ["cron", "catch-up", "manual"]},
            "campaign": {"type": "string", "description": "<schedule>:<period>"},
            "claimed": {"type": "boolean"},
            "by": {"type": "string"},
            "recipients": {"type": "integer"},
            "deliveries": {
                "type": "object",
                "nullable": True,
                "description": "The push's progress: pending, sent, failed, unknown…",
            },
            "text": {"type": "string"},
        },
    },
}
