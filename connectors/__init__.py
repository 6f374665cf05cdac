"""Channel connectors: one package per platform, each translating at the edge to adaldyk_bots.domain."""
