"""Task packages. Importing this package registers every task (it is the ``zoo.plugins`` entry point)."""
