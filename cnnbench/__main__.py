"""`python -m cnnbench` runs the command-line interface."""

from cnnbench.cli import main

main()
