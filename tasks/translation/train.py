"""``python -m tasks.translation.train [flags]``: the same as ``zoo train translation [flags]``."""
from tasks.engine.commands import train_main

main = train_main("translation")

if __name__ == "__main__":
    main()
