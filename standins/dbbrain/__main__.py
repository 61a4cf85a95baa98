"""``python -m standins.dbbrain``: run the emulator by hand (see cli.py)."""

from standins.dbbrain.cli import main

main()
