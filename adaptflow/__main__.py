"""`python -m adaptflow <command>`: the same as the installed `adaptflow` command."""

from adaptflow.entry.command import main

if __name__ == "__main__":
    main()
