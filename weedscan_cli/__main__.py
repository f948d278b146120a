"""`python -m weedscan_cli ...` is `weedscan ...`."""

from weedscan_cli import main

main()
