"""``python -m tasks.asr.train [flags]``: the same as ``zoo train asr [flags]``."""
from tasks.engine.commands import train_main

main = train_main("asr")

if __name__ == "__main__":
    main()
