"""Dkron's execution notifications: webhooks, email and Cronitor pings."""

from core.notify.notifier import Delivery, Notifier
from core.notify.settings import NotifyConfig
from core.notify.templates import TemplateData, TemplateError, render, report

__all__ = [
    "Delivery",
    "Notifier",
    "NotifyConfig",
    "TemplateData",
    "TemplateError",
    "render",
    "report",
]
