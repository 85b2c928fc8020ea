"""`python -m hubbub` is the `hubbub` command."""

import sys

from hubbub.cli import main

sys.exit(main())
