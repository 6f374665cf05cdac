"""The Meta settings: each product on when its id and token are set; a bad value stops start-up with one
line naming the variable; the three channels share one model, checked once."""

from __future__ import annotations

import pytest

from adaldyk_bots.settings import SettingsError, installed_channel_settings, load_settings
from connectors.meta.settings import DEFAULT_GRAPH_API_URL, MetaSettings

BASE = {"meta_app_secret": "s3cret", "meta_verify_token": "v3rify"}


def test_the_three_channels_share_one_model_and_are_off_without_credentials() -> None:
    models = installed_channel_settings()
    assert models["facebook"] is models["instagram"] is models["whatsapp"] is MetaSettings
    own = load_settings(_env_file=None).channel(MetaSettings)
    assert own.enabled_products() == []
    assert own.graph_api_url == DEFAULT_GRAPH_API_URL == "https://graph.facebook.com/v23.0"
    assert own.instagram_url == own.graph_api_url and not own.instagram_login
    assert (own.meta_human_agent, own.meta_reconcile_seconds) == (False, 900)


def test_each_product_is_on_when_its_id_and_token_are_set() -> None:
    own = MetaSettings(
        _env_file=None,  # type: ignore[call-arg]
        whatsapp_phone_number_id="106540352242922",
        whatsapp_token="EAAx",
        instagram_account_id="17841400000000001",
        instagram_token="IGx",
        instagram_api_url="https://graph.instagram.com/v23.0",
        **BASE,
    )
    assert own.enabled_products() == ["instagram", "whatsapp"]
    assert own.instagram_login and own.app_secrets("instagram") == ["s3cret"]


@pytest.mark.parametrize(
    ("env", "named"),
    [
        (
            {"ADALDYK_FACEBOOK_PAGE_ID": "my-page", "ADALDYK_FACEBOOK_PAGE_TOKEN": "EAAx"},
            "ADALDYK_FACEBOOK_PAGE_ID",
        ),
        ({"ADALDYK_FACEBOOK_PAGE_TOKEN": "EAAx"}, "ADALDYK_FACEBOOK_PAGE_ID"),
        ({"ADALDYK_WHATSAPP_PHONE_NUMBER_ID": "1"}, "ADALDYK_WHATSAPP_TOKEN"),
        ({"ADALDYK_GRAPH_API_URL": "https://graph.facebook.com"}, "ADALDYK_GRAPH_API_URL"),
        ({"ADALDYK_META_RECONCILE_SECONDS": "1"}, "ADALDYK_META_RECONCILE_SECONDS"),
        ({"ADALDYK_META_HUMAN_AGENT": "perhaps"}, "ADALDYK_META_HUMAN_AGENT"),
        ({"ADALDYK_INSTAGRAM_ACCOUNT_ID": "1", "ADALDYK_INSTAGRAM_TOKEN": "IGx"}, "ADALDYK_META_APP_SECRET"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if "ADALDYK_INSTAGRAM_TOKEN" not in env:
        monkeypatch.setenv("ADALDYK_META_APP_SECRET", "s3cret")
        monkeypatch.setenv("ADALDYK_META_VERIFY_TOKEN", "v3rify")
    with pytest.raises(SettingsError) as err:
        load_settings(_env_file=None)
    assert f"{named}: " in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).count(named) == 1  # one model for three channels: reported once
