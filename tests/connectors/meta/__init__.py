"""Meta (Facebook, Instagram, WhatsApp) outbound tests: shared ids of the fake accounts."""

PAGE_ID = "104857600000001"
PAGE_TOKEN = "EAAfakePageToken"
IG_ID = "17841400000000001"
IG_TOKEN = "IGQfakeInstagramToken"
WA_ID = "106540352242922"
WA_TOKEN = "EAAfakeWhatsAppToken"
