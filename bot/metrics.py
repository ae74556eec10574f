"""Prometheus metrics, one registry per app (no global default registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

OUTCOMES = (
    "reply",
    "success",
    "verified",
    "retry",
    "deadline",
    "handler_error",
    "bad_request",
    "forbidden",
    "too_large",
)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.webhook_requests = Counter(
            "gongzhi_webhook_requests",
            "WeChat webhook requests by outcome",
            ["outcome"],
            registry=self.registry,
        )
        # Pre-bound children: .labels() costs a dict lookup and a lock on every call.
        self.outcome = {name: self.webhook_requests.labels(name) for name in OUTCOMES}
        self.handler_seconds = Histogram(
            "gongzhi_handler_seconds",
            "Time from a parsed message to its reply, lock and store included",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 4.5, 10),
            registry=self.registry,
        )
        self.dedup_hits = Counter(
            "gongzhi_retry_dedup_hits",
            "WeChat retries answered without running a handler again",
            registry=self.registry,
        )
        self.deadline_fallbacks = Counter(
            "gongzhi_deadline_fallbacks",
            "Replies that missed the passive-reply deadline and went out as customer-service messages",
            registry=self.registry,
        )
        self.api_calls = Counter(
            "gongzhi_wechat_api_calls",
            "Outbound WeChat API calls by API and error code (0 is success, -2 transport failure)",
            ["api", "errcode"],
            registry=self.registry,
        )

    def observe_api_call(self, api: str, errcode: int) -> None:
        self.api_calls.labels(api, str(errcode)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
