"""The instrument catalog: the bundled file, INSTRUMENTS_PATH, and errors that name the culprit."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from brokerflow.errors import ConfigError
from brokerflow.instruments import Instrument, InstrumentCatalog, load_instruments
from brokerflow.matching import SymbolRules
from brokerflow.settings import Settings

GOOD: dict[str, Any] = {
    "currencies": {"BRL": {"decimals": 2}, "USDT": {"decimals": 8}},
    "instruments": {
        "PETR4": {
            "venue": "B3",
            "currency": "BRL",
            "tickSize": "0.01",
            "lotSize": "100",
            "session": "B3",
            "settlementDays": 2,
            "feeSchedule": "B3",
            "priceBandPct": "10",
        },
        "BTCUSDT": {
            "venue": "BINANCE",
            "currency": "USDT",
            "tickSize": "0.01",
            "lotSize": "0.00001",
            "session": "24x7",
            "settlementDays": 0,
            "feeSchedule": "CRYPTO",
        },
    },
}


def test_the_bundled_catalog() -> None:
    catalog = load_instruments(Settings(instruments_path=""))
    assert [i.symbol for i in catalog] == [
        "PETR4",
        "VALE3",
        "ITUB4",
        "BBDC4",
        "BTCUSDT",
        "ETHUSDT",
        "SOLUSDT",
        "ADAUSDT",
        "DOGEUSDT",
    ]
    assert catalog.get("PETR4") == Instrument(
        symbol="PETR4",
        venue="B3",
        currency="BRL",
        tick_size=Decimal("0.01"),
        lot_size=Decimal("1"),
        session="B3",
        settlement_days=2,
        fee_schedule="B3",
    )
    grids = {i.symbol: (str(i.tick_size), str(i.lot_size)) for i in catalog if i.venue == "BINANCE"}
    assert grids == {
        "BTCUSDT": ("0.01", "0.00001"),
        "ETHUSDT": ("0.01", "0.0001"),
        "SOLUSDT": ("0.01", "0.001"),
        "ADAUSDT": ("0.0001", "0.1"),
        "DOGEUSDT": ("0.00001", "1"),
    }
    for instrument in catalog:
        crypto = instrument.venue == "BINANCE"
        assert instrument.currency == ("USDT" if crypto else "BRL")
        assert instrument.session == ("24x7" if crypto else "B3")
        assert instrument.settlement_days == (0 if crypto else 2)
        assert instrument.fee_schedule == ("CRYPTO" if crypto else "B3")
    assert (catalog.currency_decimals("BRL"), catalog.currency_decimals("usdt")) == (2, 8)
    assert catalog.currencies == ["BRL", "USDT"]


def test_rules_for_the_exchange_and_lookups() -> None:
    catalog = InstrumentCatalog.from_wire(GOOD)
    assert catalog["petr4"].rules() == SymbolRules(
        tick_size=Decimal("0.01"), lot_size=Decimal("100"), price_band_pct=Decimal("10")
    )
    assert catalog.get("VALE3") is None
    assert "btcusdt" in catalog
    assert "VALE3" not in catalog
    assert len(catalog) == 2
    with pytest.raises(KeyError, match="VALE3"):
        catalog["VALE3"]
    with pytest.raises(KeyError, match="EUR"):
        catalog.currency_decimals("EUR")
    assert InstrumentCatalog.from_wire(catalog.to_wire()).to_wire() == catalog.to_wire()


def test_instruments_path_replaces_the_bundled_catalog(tmp_path: Path) -> None:
    path = tmp_path / "instruments.json"
    path.write_text(json.dumps(GOOD))
    catalog = load_instruments(Settings(instruments_path=str(path)))
    assert catalog.symbols == ["PETR4", "BTCUSDT"]
    # JSON numbers are read as exact decimals, never floats
    data = copy.deepcopy(GOOD)
    data["instruments"]["PETR4"]["tickSize"] = 0.05
    path.write_text(json.dumps(data))
    assert load_instruments(Settings(instruments_path=str(path)))["PETR4"].tick_size == Decimal(
        "0.05"
    )


def _broken(change: Any) -> dict[str, Any]:
    data = copy.deepcopy(GOOD)
    change(data)
    return data


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (
            _broken(lambda d: d["instruments"]["PETR4"].update(tickSize="-0.01")),
            "'PETR4': tickSize: must be a positive",
        ),
        (
            _broken(lambda d: d["instruments"]["PETR4"].update(lotSize="lots")),
            "'PETR4': lotSize: 'lots' is not a decimal",
        ),
        (
            _broken(lambda d: d["instruments"]["BTCUSDT"].update(currency="EUR")),
            "'BTCUSDT': currency: 'EUR' is not in currencies",
        ),
        (
            _broken(lambda d: d["instruments"]["BTCUSDT"].update(session="9to5")),
            "'BTCUSDT': session: '9to5' is not one of",
        ),
        (
            _broken(lambda d: d["instruments"]["BTCUSDT"].update(venue="NYSE")),
            "'BTCUSDT': venue: 'NYSE'",
        ),
        (
            _broken(lambda d: d["instruments"]["BTCUSDT"].update(feeSchedule="FREE")),
            "'BTCUSDT': feeSchedule: 'FREE'",
        ),
        (
            _broken(lambda d: d["instruments"]["PETR4"].update(settlementDays="2")),
            "'PETR4': settlementDays",
        ),
        (
            _broken(lambda d: d["instruments"]["PETR4"].update(tickSize=True)),
            "'PETR4': tickSize: expected a decimal",
        ),
        (
            _broken(lambda d: d["instruments"]["PETR4"].pop("lotSize")),
            "'PETR4': missing field(s) lotSize",
        ),
        (
            _broken(lambda d: d["instruments"]["PETR4"].update(colour="red")),
            "'PETR4': unknown field(s) colour",
        ),
        (
            _broken(lambda d: d["instruments"].update({"PETR 4": d["instruments"]["PETR4"]})),
            "'PETR 4': not a symbol",
        ),
        (
            _broken(lambda d: d["instruments"].update(petr4=d["instruments"]["PETR4"])),
            "'petr4': listed twice",
        ),
        (
            _broken(lambda d: d["currencies"].update(BRL={"decimals": -1})),
            "currency 'BRL': decimals",
        ),
        (_broken(lambda d: d.pop("currencies")), "currencies: expected a JSON object"),
        (_broken(lambda d: d.update(instruments={})), "instruments: expected a non-empty"),
    ],
)
def test_a_bad_catalog_names_the_symbol_and_the_field(data: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        InstrumentCatalog.from_wire(data)
    assert words in str(caught.value)


def test_a_bad_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "instruments.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=f"instrument catalog {path}: not JSON"):
        load_instruments(Settings(instruments_path=str(path)))
    path.write_text(json.dumps(_broken(lambda d: d["instruments"]["PETR4"].update(lotSize="0"))))
    with pytest.raises(ConfigError, match=f"{path}: instrument 'PETR4': lotSize"):
        load_instruments(Settings(instruments_path=str(path)))
    missing = tmp_path / "absent.json"
    with pytest.raises(ConfigError, match=f"INSTRUMENTS_PATH {missing}: cannot be read"):
        load_instruments(Settings(instruments_path=str(missing)))
