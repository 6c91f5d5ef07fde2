"""The leader's side of each run (:class:`Dispatcher`) and the live output of runs in
progress (:class:`LiveOutputs`)."""

from core.dispatch.dispatcher import Dispatcher
from core.dispatch.live import LiveOutputs

__all__ = ["Dispatcher", "LiveOutputs"]
