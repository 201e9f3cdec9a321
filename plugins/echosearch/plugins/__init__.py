"""Built-in echosearch task plugins, registered through the `echosearch.tasks` entry-point group."""
