"""The bundled example app (`corq.demo.tasks`) and the `corq demo` runner (`corq.demo.run`).

Kept import-free: the process pool's children import `corq.demo.tasks` by name.
"""

from __future__ import annotations
