"""`python -m runtime`: the image's ENTRYPOINT, configured only by KILN_* env."""

from __future__ import annotations

import sys

from runtime.server import serve
from runtime.settings import SettingsError, settings_from_env


def main() -> int:
    try:
        settings = settings_from_env()
    except SettingsError as error:
        print(f"kiln-runtime: invalid settings: {error}", file=sys.stderr)
        return 2
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
