"""Cluster membership: SWIM gossip, Dkron's target selection and Member JSON."""

from .gossip import Gossip, MemberInfo
from .shape import member_json
from .targets import clean_tags, select_targets

__all__ = ["Gossip", "MemberInfo", "clean_tags", "member_json", "select_targets"]
