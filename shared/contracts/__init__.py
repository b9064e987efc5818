"""Message contracts: pydantic models and routing keys shared by the services."""

from shared.contracts.base import Message, Notification

__all__ = ["Message", "Notification"]
