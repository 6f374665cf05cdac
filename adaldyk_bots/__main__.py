"""`python -m adaldyk_bots` is the `adaldyk` command."""

import sys

from adaldyk_bots.cli import main

sys.exit(main())
