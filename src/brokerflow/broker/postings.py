"""Double entry: every ledger entry as postings that sum to zero per asset.

The ledger events say what happened to one account; :func:`postings` says where each amount came
from and went, so a checker (or an accountant) can prove nothing was created or lost. Books::

    customer:{account}:available     settled cash not held (may dip below zero while a
                                     purchase spends unsettled proceeds)
    customer:{account}:held          cash held for open BUY orders
    customer:{account}:unsettled     sale proceeds before their settlement date
    customer:{account}:shares        shares free to sell            (asset = the symbol)
    customer:{account}:shares_held   shares held for open SELL orders
    external:bank                    where deposits come from and withdrawals go
    external:custody                 other custodians (custody transfers in)
    exchange:clearing                the other side of every trade: cash and shares
    broker:fees                      the fees charged

>>> from brokerflow.schemas.ledger import CashDeposited
>>> entry = CashDeposited(account_id="a1", sequence=1, entry_id="a1:1", currency="BRL",
...                       event_time="2026-01-02T13:00:00Z", amount="100.00")
>>> [(p.book, p.asset, str(p.amount)) for p in postings(entry)]
[('customer:a1:available', 'BRL', '100.00'), ('external:bank', 'BRL', '-100.00')]
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

__all__ = [
    "BANK",
    "BROKER_FEES",
    "CLEARING",
    "CUSTODY",
    "Posting",
    "customer_book",
    "postings",
]

BANK: Final = "external:bank"
CUSTODY: Final = "external:custody"
CLEARING: Final = "exchange:clearing"
BROKER_FEES: Final = "broker:fees"


@dataclass(frozen=True, slots=True)
class Posting:
    """``amount`` of ``asset`` (a currency or a symbol) into ``book`` (negative: out of it)."""

    book: str
    asset: str
    amount: Decimal


def customer_book(account_id: str, book: str) -> str:
    """``customer:{account}:{book}`` (available, held, unsettled, shares, shares_held)."""
    return f"customer:{account_id}:{book}"


def _move(asset: str, amount: Decimal, source: str, target: str) -> list[Posting]:
    return [Posting(target, asset, amount), Posting(source, asset, -amount)]


def postings(event: Any) -> list[Posting]:
    """The postings of one ledger entry; they sum to zero per asset. ``AccountOpened`` and any
    zero amount post nothing."""
    kind = event.type
    account = event.account_id
    currency = event.currency
    available = customer_book(account, "available")
    held = customer_book(account, "held")
    if kind == "AccountOpened":
        return []
    if kind == "CashDeposited":
        return _move(currency, event.amount, BANK, available)
    if kind == "CashWithdrawn":
        return _move(currency, event.amount, available, BANK)
    if kind == "FundsHeld":
        return _move(currency, event.amount, available, held)
    if kind == "FundsReleased":
        return _move(currency, event.amount, held, available)
    if kind == "CashSettled":
        return _move(currency, event.amount, customer_book(account, "unsettled"), available)
    shares = customer_book(account, "shares")
    shares_held = customer_book(account, "shares_held")
    if kind == "CustodyTransferredIn":
        return _move(event.symbol, event.quantity, CUSTODY, shares)
    if kind == "SharesHeld":
        return _move(event.symbol, event.quantity, shares, shares_held)
    if kind == "SharesReleased":
        return _move(event.symbol, event.quantity, shares_held, shares)
    if kind == "FillSettled":
        return _fill_postings(event)
    raise TypeError(f"{kind} is not a ledger entry")


def _fill_postings(event: Any) -> list[Posting]:
    account, currency, symbol = event.account_id, event.currency, event.symbol
    available = customer_book(account, "available")
    gross = event.quantity * event.price
    result: list[Posting] = []
    if event.side == "BUY":
        if event.cash_hold_released:
            held = customer_book(account, "held")
            result += _move(currency, event.cash_hold_released, held, available)
        result += _move(currency, gross, available, CLEARING)
        result += _move(symbol, event.quantity, CLEARING, customer_book(account, "shares"))
        proceeds = available
    else:
        # Proceeds land in unsettled cash when the fill names a settlement date.
        proceeds = available
        if event.settlement_date is not None:
            proceeds = customer_book(account, "unsettled")
        result += _move(currency, gross, CLEARING, proceeds)
        result += _move(symbol, event.quantity, customer_book(account, "shares_held"), CLEARING)
    if event.fees:
        result += _move(currency, event.fees, proceeds, BROKER_FEES)
    return result
