"""Webhooks (SPEC §10): functions/webhooks.sql. Delivery itself is `loopctl worker`."""

from __future__ import annotations

from typing import Any

from loopctl.gateway.declare import BOOLEAN, LIMIT, OFFSET, STRING, UUID, body, path, query, route

EVENTS = {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 50,
          "description": "SPEC §10 event names, a family wildcard such as 'story.*', or '*'"}
STATUS = {"type": "string", "enum": ["active", "disabled"]}
TIME = {"type": "string", "format": "date-time"}
WEBHOOK_ID = "5a6b7c8d-0000-4000-8000-000000000031"
WEBHOOK_EXAMPLE: dict[str, Any] = {
    "id": WEBHOOK_ID, "url": "https://hooks.example.com/loopctl",
    "events": ["story.verified", "story.rejected"], "project_id": None, "description": None,
    "status": "active", "disabled_reason": None, "consecutive_exhaustions": 0,
    "created_at": "2026-11-25T10:00:00Z", "updated_at": "2026-11-25T10:00:00Z"}
DELIVERY_EXAMPLE: dict[str, Any] = {
    "id": "6b7c8d9e-0000-4000-8000-000000000032", "webhook_id": WEBHOOK_ID, "event_id": 42,
    "event_type": "story.verified", "message_id": "msg_5a6b7c8d00004000800000000000003142",
    "kind": "event", "replay_of": None, "status": "succeeded", "attempts": 2,
    "next_attempt_at": None, "lease_until": None, "last_status_code": 200, "last_error": None,
    "delivered_at": "2026-11-25T10:01:05Z", "created_at": "2026-11-25T10:00:00Z",
    "attempt_log": [
        {"attempt": 1, "started_at": "2026-11-25T10:00:01Z", "duration_ms": 10012,
         "status_code": None, "error": "timed out after 10 s", "response_snippet": None,
         "lease_held": True},
        {"attempt": 2, "started_at": "2026-11-25T10:01:05Z", "duration_ms": 85,
         "status_code": 200, "error": None, "response_snippet": "ok", "lease_held": True}]}
ID = {"webhook_id": path("id")}
READERS = ("user", "orchestrator")

ROUTES = [
    route("POST", "/api/v1/webhooks", "api.create_webhook", tag="webhooks", status=201,
          args={"url": body("url", STRING, required=True),
                "events": body("events", EVENTS, required=True),
                "project_id": body("project_id", UUID, description="only this project's events"),
                "description": body("description", STRING)},
          roles=("user",), summary="Subscribe an endpoint; the signing secret is shown once",
          description="At most 10 per tenant (409 webhook_limit_reached). Private, loopback "
                      "and link-local targets are refused (422 private_webhook_target) unless "
                      "the installation allows them. Deliveries follow Standard Webhooks.",
          request_example={"url": "https://hooks.example.com/loopctl",
                           "events": ["story.verified", "story.rejected"]},
          data_example=WEBHOOK_EXAMPLE | {"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
    route("GET", "/api/v1/webhooks", "api.list_webhooks", tag="webhooks", envelope="list",
          roles=READERS, summary="List the tenant's webhooks (secrets are never shown again)",
          data_example=[WEBHOOK_EXAMPLE]),
    route("GET", "/api/v1/webhooks/{id}", "api.get_webhook", tag="webhooks", args=ID,
          roles=READERS, summary="One webhook", data_example=WEBHOOK_EXAMPLE),
    route("PATCH", "/api/v1/webhooks/{id}", "api.update_webhook", tag="webhooks",
          args=ID | {"url": body("url", STRING), "events": body("events", EVENTS),
                     "project_id": body("project_id", UUID),
                     "description": body("description", STRING),
                     "status": body("status", STATUS,
                                    description="'active' re-enables a disabled endpoint"),
                     "clear_project": body("clear_project", BOOLEAN,
                                           description="remove the project filter")},
          roles=("user",), summary="Change a webhook; fields left out stay as they are",
          request_example={"status": "active"}, data_example=WEBHOOK_EXAMPLE),
    route("DELETE", "/api/v1/webhooks/{id}", "api.delete_webhook", tag="webhooks", args=ID,
          roles=("user",), summary="Delete a webhook and its delivery log",
          data_example={"id": WEBHOOK_ID, "deleted": True}),
    route("GET", "/api/v1/webhooks/{id}/deliveries", "api.webhook_deliveries", tag="webhooks",
          args=ID | {"row_limit": query("limit", LIMIT), "row_offset": query("offset", OFFSET)},
          envelope="list", roles=READERS,
          summary="Delivery log, newest first, every attempt of each delivery",
          data_example=[DELIVERY_EXAMPLE]),
    route("POST", "/api/v1/webhooks/{id}/test", "api.test_webhook", tag="webhooks", args=ID,
          status=202, roles=("user",), summary="Send a webhook.test event to this endpoint",
          data_example={k: v for k, v in DELIVERY_EXAMPLE.items() if k != "attempt_log"}
          | {"event_type": "webhook.test", "kind": "test", "status": "pending", "attempts": 0,
             "last_status_code": None, "delivered_at": None}),
    route("POST", "/api/v1/webhooks/{id}/replay", "api.replay_webhook", tag="webhooks",
          status=202,
          args=ID | {"delivery_id": body("delivery_id", UUID),
                     "since": body("since", TIME)},
          roles=("user",),
          summary="Replay one delivery, or every matching event since a time",
          description="Give exactly one of delivery_id or since (422 invalid_replay). Replays "
                      "carry the original webhook-id so receivers can deduplicate.",
          request_example={"since": "2026-11-25T09:00:00Z"},
          data_example={"replayed": 3, "since": "2026-11-25T09:00:00Z"}),
]
