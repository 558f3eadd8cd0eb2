"""``python -m skincls`` (and ``torchrun -m skincls train ...``) runs the command line."""

from skincls.cli import main

main()
