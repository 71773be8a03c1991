"""The broker's pure core: fees, holds, settlement dates, positions, one account's decisions.

No I/O and no clock: the accounts agent (``agents/accounts.py``) and the API call it, and a
replay of the same requests and reports gives the same answers. A reading guide:

* :mod:`~brokerflow.broker.rules`: :class:`BrokerRules` (instruments, fee rates, the market-buy
  collar, the session), :func:`fee`, :func:`check_order` and the refusal codes.
* :mod:`~brokerflow.broker.calendar`: B3 business days and :func:`settlement_date`.
* :mod:`~brokerflow.broker.state`: :class:`AccountState` (cash, positions, open orders and their
  holds, pending settlements) and :func:`balances`.
* :mod:`~brokerflow.broker.account`: :func:`decide` (a request) and :func:`apply_report` (an
  exchange order event) -> the new state and an :class:`Outcome` (ledger entries, decisions,
  exchange commands).
* :mod:`~brokerflow.broker.postings`: :func:`postings`, every ledger entry as double entry.
"""

from brokerflow.broker.account import (
    AVERAGE_PRICE_DECIMALS,
    Outcome,
    apply_report,
    buy_hold,
    decide,
)
from brokerflow.broker.calendar import (
    B3_TIMEZONE,
    add_business_days,
    b3_holidays,
    easter_sunday,
    is_business_day,
    settlement_date,
)
from brokerflow.broker.postings import Posting, customer_book, postings
from brokerflow.broker.rules import (
    BrokerRules,
    FeeRates,
    Refusal,
    RefusalCode,
    check_order,
    fee,
    session_open,
)
from brokerflow.broker.state import (
    AccountState,
    Balance,
    Cash,
    OpenOrder,
    PendingAmend,
    PendingSettlement,
    Position,
    balances,
)

__all__ = [
    "AVERAGE_PRICE_DECIMALS",
    "B3_TIMEZONE",
    "AccountState",
    "Balance",
    "BrokerRules",
    "Cash",
    "FeeRates",
    "OpenOrder",
    "Outcome",
    "PendingAmend",
    "PendingSettlement",
    "Position",
    "Posting",
    "Refusal",
    "RefusalCode",
    "add_business_days",
    "apply_report",
    "b3_holidays",
    "balances",
    "buy_hold",
    "check_order",
    "customer_book",
    "decide",
    "easter_sunday",
    "fee",
    "is_business_day",
    "postings",
    "session_open",
    "settlement_date",
]
