pytest_plugins = ["touchstone.shared.testing"]
