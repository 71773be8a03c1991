"""Which trading rules the exchange applies: the instrument catalog's, then a rules file's.

One source for the worker and for ``brokerflow match``, so a replay of a command log matches it
under the same tick and lot sizes as the worker did. Symbols in neither get
:data:`~brokerflow.matching.DEFAULT_RULES`.
"""

from __future__ import annotations

from brokerflow.instruments import load_instruments
from brokerflow.matching import SymbolRules
from brokerflow.matching.replay import load_rules
from brokerflow.settings import Settings

__all__ = ["exchange_rules"]


def exchange_rules(settings: Settings, rules_path: str | None = None) -> dict[str, SymbolRules]:
    """The catalog's rules (``INSTRUMENTS_PATH`` or the bundled one), overridden per symbol by
    ``rules_path`` (default ``EXCHANGE_RULES_PATH``)."""
    rules = {instrument.symbol: instrument.rules() for instrument in load_instruments(settings)}
    path = settings.exchange_rules_path if rules_path is None else rules_path
    if path:
        rules.update(load_rules(path))
    return rules
