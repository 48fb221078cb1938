"""``python -m joyvasa_core.batch``: many photo + speech jobs (see :mod:`joyvasa_core.batch.command`)."""
import sys

from .command import main

sys.exit(main())
