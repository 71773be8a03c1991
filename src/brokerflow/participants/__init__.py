"""Simulated exchange members: market makers around the real market's mid, and a taker."""

from brokerflow.participants.core import MakerConfig, MarketMaker, Taker, TakerConfig, mid_price
from brokerflow.participants.service import Participants, participant_symbols, run_participants

__all__ = [
    "MakerConfig",
    "MarketMaker",
    "Participants",
    "Taker",
    "TakerConfig",
    "mid_price",
    "participant_symbols",
    "run_participants",
]
