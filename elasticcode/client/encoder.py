"""`json.dumps(socket.socket, cls=AlchemyEncoder)`, as in the manual: datetimes become ISO strings."""

from __future__ import annotations

import json
from typing import Any


class AlchemyEncoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        if hasattr(o, "isoformat"):
            return o.isoformat()
        return super().default(o)
