"""sqlite_utils, imported without pandas.

sqlite_utils imports pandas whenever it is installed (datasets and the parquet extra bring it
in) only to store ``pandas.Timestamp`` values as text, which the store never writes. That import
cost every process half a second and about 60 MB of memory, the GUI's start-up and each
training subprocess included. So pandas is hidden while sqlite_utils loads, unless something has
imported it already; whatever imports pandas later gets it as usual.
"""

from __future__ import annotations

import sys

if "pandas" in sys.modules or "sqlite_utils" in sys.modules:
    import sqlite_utils
else:
    sys.modules["pandas"] = None  # type: ignore[assignment]  # `import pandas` -> ImportError
    try:
        import sqlite_utils
    finally:
        if sys.modules.get("pandas", 0) is None:
            del sys.modules["pandas"]

__all__ = ["sqlite_utils"]
