"""Built-in plugin: readers (registered like a third-party plugin)."""
