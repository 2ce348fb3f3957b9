# Typing stubs for gi, as far as the Ly override needs (PEP 561: installed
# as gi-stubs).  Anything not declared here is Any.
from typing import Any

__version__: str
version_info: tuple[int, int, int]

def require_version(namespace: str, version: str) -> None: ...
def __getattr__(name: str) -> Any: ...
