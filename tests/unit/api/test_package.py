"""``uvicorn brokerflow.api:app`` finds an ASGI app, not a module of the same name."""

from __future__ import annotations

import importlib

from fastapi import FastAPI


def test_the_package_exposes_the_asgi_app_and_the_factory() -> None:
    package = importlib.import_module("brokerflow.api")
    assert callable(package.create_app)
    assert isinstance(package.app, FastAPI)  # what uvicorn's import string resolves
    assert package.app is package.app  # built once
