"""The notify config, SUBSYNC_NOTIFY_URLS and the masking of what leaves subsync."""

from __future__ import annotations

from datetime import time

import pytest

from subsync_pipeline.core.channels import ChannelError, Target, parse_targets
from subsync_pipeline.core.config import ConfigError, parse_config
from subsync_pipeline.core.notify import is_overdue
from subsync_pipeline.core.redact import mask_secrets


def test_notify_config_defaults_and_channels() -> None:
    default = parse_config({})
    assert default.ui_base_url == ""
    assert default.notify.digest_time == time(7, 0)
    assert list(default.notify.channels) == ["default"]
    config = parse_config(
        {
            "ui_base_url": "https://dagster.example.org/",
            "notify": {
                "digest_time": "06:30",
                # YAML reads an unquoted `off` as false.
                "channels": {"oncall": {"digest": False}, "stewards": {"failures": False}},
            },
        }
    )
    assert config.ui_base_url == "https://dagster.example.org"
    assert config.notify.digest_time == time(6, 30)
    assert config.notify.channels["oncall"].digest == "off"
    assert config.notify.channels["stewards"].digest_parts == ("rejects", "failures")


@pytest.mark.parametrize(
    ("notify", "named"),
    [
        ({"channels": {"Data Team": {}}}, "notify.channels"),
        ({"channels": {"x": {"digest": "sometimes"}}}, "notify.channels.x.digest"),
        ({"channels": {"x": {"digest_parts": []}}}, "notify.channels.x.digest_parts"),
        ({"channels": {"x": {"digest_parts": ["figures"]}}}, "notify.channels.x.digest_parts"),
        ({"digest_time": "25:00"}, "notify.digest_time"),
        ({"mail_to": "ops@example.org"}, "notify.mail_to"),
    ],
)
def test_a_bad_notify_key_fails_at_load_naming_it(notify: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        parse_config({"notify": notify})


def test_notify_urls_by_channel() -> None:
    targets = parse_targets(
        "stewards,engineers=mailtos://u:p@smtp.office365.com:587?to=a@example.org,b@example.org"
        "\n  slack://T1/B2/C3/#ops   json://hooks.example.org/x"
    )
    assert [t.channel for t in targets] == ["stewards", "engineers", "default", "default"]
    assert targets[0].url.endswith("to=a@example.org,b@example.org")
    with pytest.raises(ChannelError, match="entry 2") as error:
        parse_targets("json://ok.example.org Ops=mailtos://u:Secret-9@host")
    assert "Secret-9" not in str(error.value)


def test_a_url_is_shown_without_its_secrets() -> None:
    shown = Target("x", "mailtos://relay:Pw-123@smtp.example.org:587?to=ops@example.org").shown
    assert "Pw-123" not in shown and "ops@example.org" not in shown
    assert shown.startswith("mailtos://relay:")


def test_mask_secrets() -> None:
    text = mask_secrets(
        "postgresql://sub:Pw-1@db.example.org/x; PWD=Pw-2;UID=sa; ?pass=Pw-3&to=ann@example.org"
    )
    assert (
        text
        == "postgresql://sub:***@db.example.org/x; PWD=***;UID=sa; ?pass=***&to=a***@example.org"
    )


def test_overdue_is_beyond_the_factor_and_the_minimum() -> None:
    assert not is_overdue(100, usual=60, factor=3, minimum_minutes=0)
    assert is_overdue(181, usual=60, factor=3, minimum_minutes=0)
    assert not is_overdue(181, usual=60, factor=3, minimum_minutes=60)
    assert is_overdue(3601, usual=None, factor=3, minimum_minutes=60)
