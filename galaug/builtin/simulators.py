"""Built-in plugin: simulators (registered like a third-party plugin)."""
