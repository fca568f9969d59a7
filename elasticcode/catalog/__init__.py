"""Operations on the network objects of the model database, shared by the CLI, API and magics."""

from .kinds import ADDABLE, BY_PLURAL, KINDS, Field, Kind
from .ops import add, delete, find, kind_of, rename, rows, update
from .upsert import as_dict, upsert

__all__ = ["ADDABLE", "BY_PLURAL", "KINDS", "Field", "Kind", "add", "delete", "find", "kind_of", "rename", "rows", "update",
           "upsert", "as_dict"]
