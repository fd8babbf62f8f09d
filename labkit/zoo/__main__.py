"""``python -m labkit.zoo build|eval``."""
from .cli import main

raise SystemExit(main())
