"""``python -m joyvasa_core``: the headless photo + speech -> MP4 job (see :mod:`joyvasa_core.cli`)."""
import sys

from .cli import main

sys.exit(main())
