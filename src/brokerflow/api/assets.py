"""``GET /api/v1/assets``: the instrument catalog, the one the exchange and the broker read."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter

from brokerflow.api.deps import Caller, Context
from brokerflow.api.errors import error_responses
from brokerflow.api.models import Asset, AssetFees, AssetList

if TYPE_CHECKING:
    from brokerflow.broker import BrokerRules
    from brokerflow.instruments import Instrument

__all__ = ["asset_view", "router"]

router = APIRouter(prefix="/api/v1", tags=["assets"])


def asset_view(rules: BrokerRules, instrument: Instrument) -> Asset:
    """An instrument as the API shows it, with its fee schedule's rates per side."""
    if instrument.fee_schedule == "B3":
        components = {
            "trading": rules.fees.b3_trading_pct,
            "settlement": rules.fees.b3_settlement_pct,
        }
    else:
        components = {"trading": rules.fees.crypto_pct}
    per_side = rules.fees.pct(instrument.fee_schedule)
    return Asset(
        symbol=instrument.symbol,
        venue=instrument.venue,
        currency=instrument.currency,
        tick_size=instrument.tick_size,
        lot_size=instrument.lot_size,
        session=instrument.session,
        settlement_days=instrument.settlement_days,
        price_band_pct=instrument.price_band_pct,
        fees=AssetFees(
            schedule=instrument.fee_schedule,
            buy_pct=per_side,
            sell_pct=per_side,
            components=components,
        ),
    )


@router.get(
    "/assets",
    response_model=AssetList,
    responses=error_responses(401, 429, 503),
    summary="Tradable instruments: currency, tick and lot size, session, settlement, fees",
)
async def list_assets(ctx: Context, _: Caller) -> AssetList:
    return AssetList(assets=[asset_view(ctx.rules, i) for i in ctx.rules.instruments])
