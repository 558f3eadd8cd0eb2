"""``python -m skincls`` (and ``torchrun -m skincls train ...``) runs the command line."""

from skincls.cli.root import main

main()
