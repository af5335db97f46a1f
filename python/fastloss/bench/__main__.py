"""python -m fastloss.bench"""

from __future__ import annotations

from . import main

raise SystemExit(main())
