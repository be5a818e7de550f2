"""Built-in plugin: degradations (registered like a third-party plugin)."""
