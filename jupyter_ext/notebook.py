"""What this kernel did with ElasticCode: the processors the flow graph shows by default."""

from __future__ import annotations

# Names of the processors this kernel published (`%%flow processor`) or added (`%flow add processor`).
PROCESSORS: set[str] = set()
