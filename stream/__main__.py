"""`python -m stream` is `crmbonus`."""

from stream.cli import main

main()
