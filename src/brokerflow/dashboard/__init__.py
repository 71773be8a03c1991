"""The live market dashboard: tiles, candles with VWAP, the exchange's depth and trades, health."""

from brokerflow.dashboard.service import Hub, create_dashboard
from brokerflow.dashboard.state import Board, BookCopy, bar_json

__all__ = ["Board", "BookCopy", "Hub", "bar_json", "create_dashboard"]
