"""`python -m calmline fetch [DEST]`: fetch the encoder blob and tokenizer (see calmline.fetch)."""

import sys

from . import default_base_dir, fetch


def main(argv: "list[str]") -> int:
    if len(argv) < 1 or argv[0] != "fetch" or len(argv) > 2:
        print("usage: python -m calmline fetch [DEST]\n"
              f"  fetches the encoder blob and tokenizer into DEST (default {default_base_dir()})", file=sys.stderr)
        return 2
    fetch(argv[1] if len(argv) == 2 else None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
