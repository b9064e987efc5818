"""Sync messages: deliveries acknowledged by the ministry."""

from __future__ import annotations

from datetime import datetime

from shared.contracts.base import Model, Notification


class Delivery(Model):
    record_id: str
    version: int
    receipt_id: str
    delivered_at: datetime


class RecordsDelivered(Notification):
    ROUTING_KEY = "sync.record.delivered.v1"

    deliveries: list[Delivery]
