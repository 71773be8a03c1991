"""Symbol rules: defaults, unit conversions, and loud failures on bad configuration."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from brokerflow.errors import ConfigError
from brokerflow.matching import DEFAULT_RULES, SelfTradePrevention, SymbolRules
from brokerflow.matching.rules import rules_from_wire


def test_defaults_for_unconfigured_symbols() -> None:
    assert (
        SymbolRules(
            tick_size=Decimal("0.01"),
            lot_size=Decimal("1"),
            price_band_pct=None,
            self_trade_prevention=SelfTradePrevention.OFF,
        )
        == DEFAULT_RULES
    )


@pytest.mark.parametrize(
    ("tick", "price", "ticks"),
    [
        ("0.01", "38.52", 3852),
        ("0.01", "38.5", 3850),
        ("0.05", "38.55", 771),
        ("0.05", "38.52", None),
        ("0.25", "100", 400),
        ("1", "0.5", None),
        ("0.01", "38.520000", 3852),
    ],
)
def test_price_to_ticks(tick: str, price: str, ticks: int | None) -> None:
    assert SymbolRules(tick_size=Decimal(tick)).price_to_ticks(Decimal(price)) == ticks


def test_quantity_to_lots_and_back() -> None:
    rules = SymbolRules(lot_size=Decimal("100"))
    assert rules.quantity_to_lots(Decimal("300")) == 3
    assert rules.quantity_to_lots(Decimal("150")) is None
    assert rules.lots_to_quantity(3) == Decimal("300")
    fractional = SymbolRules(lot_size=Decimal("0.001"))
    assert fractional.quantity_to_lots(Decimal("1.234")) == 1234
    assert fractional.quantity_to_lots(Decimal("1.2345")) is None
    assert format(fractional.lots_to_quantity(1234), "f") == "1.234"


def test_prices_print_at_tick_precision() -> None:
    assert format(SymbolRules().ticks_to_price(3850), "f") == "38.50"
    assert format(SymbolRules(tick_size=Decimal("0.05")).ticks_to_price(771), "f") == "38.55"


def test_absurd_values_do_not_convert() -> None:
    assert SymbolRules().price_to_ticks(Decimal("1e40")) is None
    assert SymbolRules().quantity_to_lots(Decimal("1e40")) is None


def test_reference_prices_need_not_sit_on_the_grid() -> None:
    rules = SymbolRules(tick_size=Decimal("0.05"))
    assert rules.price_in_ticks(Decimal("38.55")) == 771
    assert rules.price_in_ticks(Decimal("38.56")) == Fraction(3856, 5)


def test_from_wire_reads_camel_case_strings_and_defaults_the_rest() -> None:
    rules = SymbolRules.from_wire(
        {"tickSize": "0.05", "priceBandPct": "7.5", "selfTradePrevention": "CANCEL_OLDEST"}
    )
    assert rules == SymbolRules(
        tick_size=Decimal("0.05"),
        lot_size=Decimal("1"),
        price_band_pct=Decimal("7.5"),
        self_trade_prevention=SelfTradePrevention.CANCEL_OLDEST,
    )
    assert SymbolRules.from_wire(rules.to_wire()) == rules


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"tickSize": 0.05}, "tickSize: expected a decimal string"),
        ({"lotSize": "0"}, "lotSize: must be a positive decimal"),
        ({"priceBandPct": "-3"}, "priceBandPct: must be a positive decimal"),
        ({"tickSize": "abc"}, "tickSize: 'abc' is not a decimal number"),
        ({"selfTradePrevention": "SOMETIMES"}, "selfTradePrevention: 'SOMETIMES' is not one of"),
        ({"tick": "0.01"}, "unknown rule(s) tick"),
    ],
)
def test_bad_rules_fail_with_the_field_name(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SymbolRules.from_wire(data)


def test_a_rules_mapping_upper_cases_symbols_and_names_the_culprit() -> None:
    assert rules_from_wire({"petr4": {"lotSize": "100"}}) == {
        "PETR4": SymbolRules(lot_size=Decimal("100"))
    }
    with pytest.raises(ConfigError, match="rules for 'VALE3': lotSize"):
        rules_from_wire({"VALE3": {"lotSize": "-1"}})
    with pytest.raises(ConfigError, match="expected a JSON object"):
        rules_from_wire([])  # type: ignore[arg-type]
