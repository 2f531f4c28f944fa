"""``python -m tasks.image_classification.train [flags]``: the same as ``zoo train image_classification [flags]``."""
from tasks.engine.commands import train_main

main = train_main("image_classification")

if __name__ == "__main__":
    main()
