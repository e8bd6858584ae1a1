from __future__ import annotations

import pytest

from stevie.runtime.settings import SettingsError, describe, load_settings
from stevie.services.book_maintainer.settings import BookMaintainerSettings
from stevie.services.gateway.settings import GatewaySettings


def test_service_var_beats_shared_var_and_converts_types():
    s = load_settings(
        GatewaySettings,
        "gateway",
        {
            "STEVIE_GATEWAY_PORT": "5055",
            "STEVIE_PORT": "1",
            "STEVIE_GATEWAY_SYMBOLS": "BTCUSDT, SOLUSDT",
            "STEVIE_ENV": "dev",
        },
    )
    assert s.port == 5055 and s.symbols == ["BTCUSDT", "SOLUSDT"] and s.env == "dev"


def test_unknown_and_invalid_settings_are_named():
    with pytest.raises(SettingsError, match="STEVIE_GATEWAY_PROT"):
        load_settings(GatewaySettings, "gateway", {"STEVIE_GATEWAY_PROT": "1"})
    with pytest.raises(SettingsError, match="port"):
        load_settings(GatewaySettings, "gateway", {"STEVIE_GATEWAY_PORT": "abc"})
    with pytest.raises(SettingsError, match="VENUES"):
        load_settings(BookMaintainerSettings, "book-maintainer", {"STEVIE_BOOK_MAINTAINER_VENUES": "kraken"})


def test_secrets_are_masked():
    s = load_settings(
        GatewaySettings,
        "gateway",
        {"STEVIE_OPERATOR_TOKEN": "hunter2", "STEVIE_DATABASE_URL": "postgresql://u:pw@h:5432/db"},
    )
    d = describe(s)
    assert d["operator_token"] == "***" and "pw" not in str(d["database_url"])
    assert s.operator_token == "hunter2"
