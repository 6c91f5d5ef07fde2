"""Dkron's execution notifications: webhooks, email and Cronitor pings.

The notifier (aiohttp, smtplib) is imported from ``core.notify.notifier`` where it is
used: ``core.config`` reads the settings on every ``dkronctl`` start, and importing
the package must stay cheap.
"""

from core.notify.settings import NotifyConfig
from core.notify.templates import TemplateData, TemplateError, render, report

__all__ = ["NotifyConfig", "TemplateData", "TemplateError", "render", "report"]
