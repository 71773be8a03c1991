"""The broker's pure core: fees, holds, settlement dates, positions, one account's decisions.

Work in progress: the account state machine (decide, apply_report, postings) lands next.
"""

from brokerflow.broker.calendar import (
    B3_TIMEZONE,
    add_business_days,
    b3_holidays,
    easter_sunday,
    is_business_day,
    settlement_date,
)
from brokerflow.broker.rules import (
    BrokerRules,
    FeeRates,
    Refusal,
    RefusalCode,
    check_order,
    fee,
    session_open,
)

__all__ = [
    "B3_TIMEZONE",
    "BrokerRules",
    "FeeRates",
    "Refusal",
    "RefusalCode",
    "add_business_days",
    "b3_holidays",
    "check_order",
    "easter_sunday",
    "fee",
    "is_business_day",
    "session_open",
    "settlement_date",
]
