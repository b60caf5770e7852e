"""`python -m taskloom`: the `taskloom` command."""

from .cli import main

if __name__ == "__main__":
    main()
