"""Meta (Facebook, Instagram, WhatsApp) outbound tests: shared ids of the fake accounts."""

PAGE_ID = "104857600000001"
PAGE_TOKEN = "EAAfakePageToken"
IG_ID = "17841400000000001"
IG_TOKEN = "IGQfakeInstagramToken"
WA_ID = "106540352242922"
WA_TOKEN = "EAAfakeWhatsAppToken"
APP_SECRET = "meta-app-secret-for-tests"
VERIFY_TOKEN = "meta-verify-token-for-tests"


def meta_settings(make_settings: object, fake: object, **overrides: object) -> object:
    """Settings for the real service against the fake Graph API: all three products on, fast loops."""
    values: dict[str, object] = {
        "meta_app_secret": APP_SECRET,
        "meta_verify_token": VERIFY_TOKEN,
        "graph_api_url": fake.api_url,  # type: ignore[attr-defined]
        "facebook_page_id": PAGE_ID,
        "facebook_page_token": PAGE_TOKEN,
        "instagram_account_id": IG_ID,
        "instagram_token": IG_TOKEN,
        "whatsapp_phone_number_id": WA_ID,
        "whatsapp_token": WA_TOKEN,
        "dispatch_interval_seconds": 0.1,
    }
    values.update(overrides)
    return make_settings(**values)  # type: ignore[operator]
